"""Real faults injected into lab hosts, so selfheal has something real to heal.

Called by ``orchestrator.cli.lab inject``, the e2e tests and ``benchmarks/mttr.py`` through
``inject(fault, host)``. Each fault is one entry of ``FAULTS``: a remote command run over SSH
with the lab key. The injection time is taken just before the command runs and recorded in
``<lab>/state.json`` under ``injections``. To add a fault, add an entry (e.g. cpu_runaway,
memory_leak) and say in its ``description`` what a healthy fix looks like.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from orchestrator.errors import PermanentError, TargetError
from orchestrator.lab.paths import DEMO_UNIT, lab_paths
from orchestrator.lab.probe import ssh_run
from orchestrator.lab.state import Injection, load_state, locked, record_injection

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Fault:
    """A fault the lab can inject: what it does, and the command that does it on the host."""

    description: str
    command: tuple[str, ...]


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
}


def inject(fault: str, host: str) -> Injection:
    """Inject ``fault`` into lab host ``host``; the recorded ``Injection``.

    Raises ``TargetError`` for an unknown fault or host (naming the valid choices) and
    ``PermanentError`` when the host refused the fault.
    """
    if fault not in FAULTS:
        raise TargetError(f"unknown fault {fault!r}; known faults: {', '.join(sorted(FAULTS))}")
    paths = lab_paths()
    state = load_state(paths)
    names = [h.name for h in state.hosts] if state else []
    if host not in names:
        choices = ", ".join(names) if names else "none (run 'selfheal lab up' first)"
        raise TargetError(f"unknown lab host {host!r}; lab hosts: {choices}")
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
