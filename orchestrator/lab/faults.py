"""Real faults injected into lab hosts, so selfheal has something real to heal.

Called by ``orchestrator.cli.lab inject``, the e2e tests and ``benchmarks/mttr.py`` through
``inject(fault, host)``. Each fault is one entry of ``FAULTS``: a remote command run over SSH
with the lab key. The injection time is taken just before the command runs and recorded in
``<lab>/state.json`` under ``injections``. To add a fault, add an entry and say in its
``description`` what a healthy fix looks like; its ``clear`` command undoes it
(``selfheal lab clear FAULT HOST``), healed or not.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from orchestrator.errors import PermanentError, TargetError
from orchestrator.lab import demo_releases
from orchestrator.lab.paths import DEMO_UNIT, lab_paths
from orchestrator.lab.probe import ssh_run
from orchestrator.lab.state import Injection, load_state, locked, record_injection

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Fault:
    """A fault the lab can inject: what it does, and the command that does it on the host."""

    description: str
    command: tuple[str, ...]
    clear: tuple[str, ...] = ()


ROGUE_PID_FILE = "/run/selfheal-lab-rogue.pid"
# A rogue process outside any unit: setsid + nohup so it outlives the SSH session, then moved from
# the session's cgroup (ssh.service here: the lab has no pam_systemd) to the host's root cgroup in
# both hierarchies systemd uses, so /proc/PID/cgroup names no unit at all.
_ROGUE = (
    "setsid nohup sha256sum /dev/zero >/dev/null 2>&1 </dev/null & pid=$!; "
    f"echo $pid > {ROGUE_PID_FILE}; "
    "for h in systemd unified; do echo $pid > /sys/fs/cgroup/$h/cgroup.procs || exit 1; done"
)
_UNROGUE = (
    f"if test -f {ROGUE_PID_FILE}; then kill $(cat {ROGUE_PID_FILE}) 2>/dev/null; "
    f"rm -f {ROGUE_PID_FILE}; fi; true"
)


FAULTS: dict[str, Fault] = {
    "service_crash": Fault(
        description=f"SIGKILL {DEMO_UNIT}; systemd marks it failed and does not restart it",
        command=("systemctl", "kill", "--kill-whom=main", "--signal=SIGKILL", DEMO_UNIT),
    ),
    "disk_full": Fault(
        description="fill the host's 64 MB /srv tmpfs with /srv/fill (remove it to heal)",
        # dd writes until ENOSPC (its non-zero exit is the point); the file must then exist
        command=("sh", "-c", "dd if=/dev/zero of=/srv/fill bs=1M 2>/dev/null; test -s /srv/fill"),
    ),
    "cpu_runaway": Fault(
        description="a rogue sha256sum outside any unit burns a core (stop or renice it to heal)",
        command=("sh", "-c", _ROGUE),
        clear=("sh", "-c", _UNROGUE),
    ),
    "cpu_runaway_unit": Fault(
        description=f"{DEMO_UNIT}'s own process starts a busy thread (SIGUSR1; restart heals)",
        command=("systemctl", "kill", "--kill-whom=main", "--signal=SIGUSR1", DEMO_UNIT),
        clear=("systemctl", "kill", "--kill-whom=main", "--signal=SIGUSR2", DEMO_UNIT),
    ),
    "memory_leak": Fault(
        description=f"deploy demo release {demo_releases.LEAKY}, whose memory grows 20 MB/s up "
                    f"to 384 MB (restart buys time; rolling back to {demo_releases.FIRST} heals)",
        command=demo_releases.deploy_command(demo_releases.LEAKY),
        clear=demo_releases.undeploy_command(demo_releases.LEAKY),
    ),
}


def _check_target(fault: str, host: str) -> None:
    if fault not in FAULTS:
        raise TargetError(f"unknown fault {fault!r}; known faults: {', '.join(sorted(FAULTS))}")
    state = load_state(lab_paths())
    names = [h.name for h in state.hosts] if state else []
    if host not in names:
        choices = ", ".join(names) if names else "none (run 'selfheal lab up' first)"
        raise TargetError(f"unknown lab host {host!r}; lab hosts: {choices}")


def inject(fault: str, host: str) -> Injection:
    """Inject ``fault`` into lab host ``host``; the recorded ``Injection``.

    Raises ``TargetError`` for an unknown fault or host (naming the valid choices) and
    ``PermanentError`` when the host refused the fault.
    """
    _check_target(fault, host)
    paths = lab_paths()
    with locked(paths):
        injected_at = time.time()
        result = ssh_run(host, list(FAULTS[fault].command), timeout=15.0, paths=paths)
        if result.returncode != 0:
            raise PermanentError(
                f"injecting {fault} into {host} failed (rc {result.returncode}): "
                f"{result.stderr.strip() or result.stdout.strip()}"
            )
        injection = Injection(fault=fault, host=host, injected_at=injected_at)
        record_injection(paths, injection)
    log.info("injected %s into %s at %.3f", fault, host, injected_at)
    return injection


def clear(fault: str, host: str) -> None:
    """Undo ``fault`` on ``host`` whether or not selfheal healed it (idempotent).

    Raises ``TargetError`` for an unknown fault or host, or a fault with no ``clear`` command,
    and ``PermanentError`` when the host refused.
    """
    _check_target(fault, host)
    command = FAULTS[fault].clear
    if not command:
        raise TargetError(f"fault {fault!r} has no clear command; faults that have one: "
                          f"{', '.join(sorted(n for n, f in FAULTS.items() if f.clear))}")
    result = ssh_run(host, list(command), timeout=15.0)
    if result.returncode != 0:
        raise PermanentError(f"clearing {fault} on {host} failed (rc {result.returncode}): "
                             f"{result.stderr.strip() or result.stdout.strip()}")
    log.info("cleared %s on %s", fault, host)
