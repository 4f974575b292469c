"""Real faults injected into lab hosts, so selfheal has something real to heal.

Called by ``orchestrator.cli.lab inject``, the e2e tests and ``benchmarks/mttr.py`` through
``inject(fault, host)``. Each fault is one entry of ``FAULTS``: a remote command run over SSH
with the lab key. The injection time is taken just before the command runs and recorded in
``<lab>/state.json`` under ``injections``. To add a fault, add an entry (e.g. cpu_runaway,
memory_leak) and say in its ``description`` what a healthy fix looks like. A fault may also run
a step on the controller first (``prepare``: e.g. the lab CA issues the certificate a TLS fault
installs) and may have a ``clear`` command (``selfheal lab clear FAULT HOST``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from orchestrator.errors import PermanentError, TargetError
from orchestrator.lab import services_web
from orchestrator.lab.paths import DEMO_UNIT, LabPaths, lab_paths
from orchestrator.lab.probe import ssh_run
from orchestrator.lab.state import Injection, load_state, locked, record_injection

log = logging.getLogger(__name__)


Step = Callable[[LabPaths, str], None]  # run on the controller: (paths, host)


@dataclass(frozen=True)
class Fault:
    """A fault the lab can inject: what it does, and the command that does it on the host;
    optionally controller-side steps before it (``prepare``) and after it (``settle``: wait
    until the host shows it), and the command (and step before it) that clear it."""

    description: str
    command: tuple[str, ...]
    prepare: Step | None = None
    settle: Step | None = None
    clear: tuple[str, ...] = ()
    prepare_clear: Step | None = None


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
    "tls_expiry": Fault(
        description="nginx serves a lab-CA certificate with 2 days left (inside the 7-day "
                    "warning window); heal: a certificate valid beyond the window, served",
        command=services_web.INSTALL_CERT,
        prepare=services_web.stage("expiring"),
        settle=services_web.wait_served,
        clear=services_web.INSTALL_CERT,
        prepare_clear=services_web.stage("valid"),
    ),
    "tls_expired": Fault(
        description="nginx serves a lab-CA certificate that expired 2 days ago; heal as "
                    "tls_expiry",
        command=services_web.INSTALL_CERT,
        prepare=services_web.stage("expired"),
        settle=services_web.wait_served,
        clear=services_web.INSTALL_CERT,
        prepare_clear=services_web.stage("valid"),
    ),
}


def inject(fault: str, host: str) -> Injection:
    """Inject ``fault`` into lab host ``host``; the recorded ``Injection``.

    Raises ``TargetError`` for an unknown fault or host (naming the valid choices) and
    ``PermanentError`` when the host refused the fault.
    """
    paths = lab_paths()
    chosen = _check(fault, host, paths)
    with locked(paths):
        if chosen.prepare is not None:
            chosen.prepare(paths, host)
        injected_at = time.time()
        _run(chosen.command, f"injecting {fault} into {host}", host, paths)
        if chosen.settle is not None:
            chosen.settle(paths, host)
        injection = Injection(fault=fault, host=host, injected_at=injected_at)
        record_injection(paths, injection)
    log.info("injected %s into %s at %.3f", fault, host, injected_at)
    return injection


def clear(fault: str, host: str) -> None:
    """Undo ``fault`` on lab host ``host`` (the fault's ``clear`` command); ``TargetError`` for
    an unknown fault or host, or a fault that has no clear."""
    if fault in FAULTS and not FAULTS[fault].clear:
        clearable = ", ".join(sorted(name for name, f in FAULTS.items() if f.clear))
        raise TargetError(f"fault {fault!r} has no clear command; faults that have one: "
                          f"{clearable}")
    paths = lab_paths()
    chosen = _check(fault, host, paths)
    with locked(paths):
        if chosen.prepare_clear is not None:
            chosen.prepare_clear(paths, host)
        _run(chosen.clear, f"clearing {fault} on {host}", host, paths)
        if chosen.settle is not None:
            chosen.settle(paths, host)
    log.info("cleared %s on %s", fault, host)


def _check(fault: str, host: str, paths: LabPaths) -> Fault:
    if fault not in FAULTS:
        raise TargetError(f"unknown fault {fault!r}; known faults: {', '.join(sorted(FAULTS))}")
    state = load_state(paths)
    names = [h.name for h in state.hosts] if state else []
    if host not in names:
        choices = ", ".join(names) if names else "none (run 'selfheal lab up' first)"
        raise TargetError(f"unknown lab host {host!r}; lab hosts: {choices}")
    return FAULTS[fault]


def _run(command: tuple[str, ...], doing: str, host: str, paths: LabPaths) -> None:
    result = ssh_run(host, list(command), timeout=15.0, paths=paths)
    if result.returncode != 0:
        raise PermanentError(f"{doing} failed (rc {result.returncode}): "
                             f"{result.stderr.strip() or result.stdout.strip()}")
