"""Real faults injected into lab hosts, so selfheal has something real to heal.

Called by ``orchestrator.cli.lab inject``/``clear``, the e2e tests and ``benchmarks/mttr.py``
through ``inject(fault, host)`` and ``clear(fault, host)``. Each fault is one entry of
``FAULTS``: a remote command run over SSH with the lab key, the command that undoes it, and the
inventory group a host needs for it (``layout``). A fault may also run a step on the controller
first (``prepare``: e.g. the lab CA issues the certificate a TLS fault installs) and wait after
it until the host shows it (``settle``); a clear may likewise wait until Prometheus no longer
sees the fault (``settle_clear``), so the next test on that host does not find the last one's
fault still in a rate window. The injection time is taken just before the command
runs and recorded in ``<lab>/state.json`` under ``injections``. To add a fault, add an entry and
say in its ``description`` what a healthy fix looks like. Faults that must outlive the SSH
session (a process holding a resource) run as transient systemd units.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from orchestrator.errors import PermanentError, TargetError
from orchestrator.lab import ca, demo_releases, procs, prometheus, services_process, services_web
from orchestrator.lab.layout import APP, DB, WEB, runs
from orchestrator.lab.paths import DEMO_PORT, DEMO_UNIT, LabPaths, lab_paths
from orchestrator.lab.probe import resolve_address, ssh_run
from orchestrator.lab.services_postgres import APP_USER
from orchestrator.lab.state import Injection, load_state, locked, record_injection

log = logging.getLogger(__name__)

Step = Callable[[LabPaths, str], None]  # run on the controller: (paths, host)


@dataclass(frozen=True)
class Fault:
    """A fault the lab can inject: what it does, the command that does it on the host, the
    command that undoes it (``selfheal lab clear``), the group a host needs for it, and
    optional controller-side steps before (``prepare``, ``prepare_clear``) and after
    (``settle``: wait until the host shows it; ``settle_clear``: until Prometheus no longer
    sees it)."""

    description: str
    command: tuple[str, ...]
    clear: tuple[str, ...]
    group: str | None = None
    prepare: Step | None = None
    settle: Step | None = None
    prepare_clear: Step | None = None
    settle_clear: Step | None = None


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


def _transient(unit: str, *argv: str, user: str | None = None) -> tuple[str, ...]:
    """Run ``argv`` as a transient unit that outlives the SSH session; ``systemd-run`` returns
    once the program says it is ready (``Type=notify``) and fails when it exits before."""
    return ("systemd-run", f"--unit={unit}", "--collect", "--quiet", "--property=Type=notify",
            *((f"--uid={user}",) if user else ()), *argv)


def _stop(unit: str, *then: str) -> tuple[str, ...]:
    """Stop ``unit`` (not loaded is fine: nothing to clear), then run the shell words ``then``."""
    return ("sh", "-c", " ; ".join((f"systemctl stop {unit} 2>/dev/null", *then, "true")))


# After a reload, nginx's workers from before it still accept connections until they take
# their shutdown signal: a client right after the first new-worker answer could be handed the
# old certificate (test_tls once read the certificate the previous test's clear had installed,
# 2 s after injecting an expired one). So wait, up to 15 s, until those workers have exited.
_OLD_WORKERS_GONE = (
    "n=0; for p in $old; do while kill -0 \"$p\" 2>/dev/null; do n=$((n + 1)); "
    "if [ $n -gt 150 ]; then echo 'nginx workers from before the reload still run after 15 s' "
    ">&2; exit 1; fi; sleep 0.1; done; done"
)


def nginx_switch(step: str) -> tuple[str, ...]:
    """A host command: the shell words ``step`` (which end with reloading nginx), then a wait
    until nginx's workers from before the reload have exited, so it serves only the new files."""
    return ("sh", "-c", "old=$(pgrep -d ' ' -f '^nginx: worker process'); "
            f"{step} || exit 1; {_OLD_WORKERS_GONE}")


_INSTALL_CERT = nginx_switch(services_web.INSTALL_CERT[-1])


def _served_certificate(kind: ca.Kind, description: str) -> Fault:
    """A web host's nginx serves a certificate of ``kind`` from the lab CA; clearing serves a
    fresh valid one the same way. Both return once nginx serves it, and only it."""
    return Fault(description=description, command=_INSTALL_CERT,
                 prepare=services_web.stage(kind), settle=services_web.wait_served,
                 clear=_INSTALL_CERT, prepare_clear=services_web.stage("valid"), group=WEB)


# Below this a group is idle (idle groups stay under 0.05 core); the catalog fires above 0.2.
_QUIET_CORES = 0.05


def group_cores(host: str) -> dict[str, float]:
    """Cores each process group of lab host ``host`` used over the last 10 s, as Prometheus
    sees them (the process_cpu_high signal's own query, for one host)."""
    instance = f"{resolve_address(host)}:{services_process.PORT}"
    rows = prometheus.query(f'sum by (groupname) (rate(namedprocess_namegroup_cpu_seconds_total'
                            f'{{instance="{instance}"}}[10s]))')
    return {row["metric"]["groupname"]: float(row["value"][1]) for row in rows}


def _cpu_quiet(group: str, timeout: float = 60.0) -> Step:
    """Wait until Prometheus shows process group ``group`` of the host idle again: a stopped
    burner stays in the signal's 10 s rate window, and a sweep right after the clear (the next
    test's) would still see a runaway there. ``PermanentError`` after ``timeout``."""

    def settle(paths: LabPaths, host: str) -> None:
        if not procs.wait_until(lambda: group_cores(host).get(group, 0.0) < _QUIET_CORES,
                                timeout, interval=1.0):
            raise PermanentError(f"{group} on {host} still used CPU {timeout:.0f} s after the "
                                 f"clear: {group_cores(host)}")

    return settle


def _demo_scraped_up(timeout: float = 30.0) -> Step:
    """Wait until Prometheus has scraped the host's demo app up after a step restarted it (a
    deploy, a clear): a scrape that fell inside the restart says "down" until the next one,
    and a sweep right then (the drill's own, or the next test's) would open a crash nobody
    caused. ``PermanentError`` after ``timeout``."""

    def settle(paths: LabPaths, host: str) -> None:
        since = time.time()
        target = f'up{{job="demo",instance="{resolve_address(host)}:{DEMO_PORT}"}}'
        if not procs.wait_until(lambda: bool(prometheus.query(
                f"{target} == 1 and timestamp({target}) > {since:.3f}")), timeout, interval=0.5):
            raise PermanentError(f"the demo app on {host} was not scraped up within "
                                 f"{timeout:.0f} s of the clear: {prometheus.query(target)}")

    return settle


FILL = "/usr/local/bin/selfheal_lab_fill.py"
DISK_UNIT = "selfheal-lab-disk-fill.service"
DB_UNIT = "selfheal-lab-db-fill.service"
CLEAR_DISK = _stop(DISK_UNIT, "rm -rf /srv/log /srv/archive")

FAULTS: dict[str, Fault] = {
    "service_crash": Fault(
        description=f"SIGKILL {DEMO_UNIT}; systemd marks it failed and does not restart it",
        command=("systemctl", "kill", "--kill-whom=main", "--signal=SIGKILL", DEMO_UNIT),
        clear=("systemctl", "restart", DEMO_UNIT),
        settle_clear=_demo_scraped_up(),
        group=APP,
    ),
    "disk_full": Fault(
        description="application logs (current + rotated, dated back) and old backup archives "
        "fill the host's 64 MB /srv; a cleanup of old rotated logs and archives heals it",
        command=_transient(DISK_UNIT, FILL, "disk", "/srv"),
        clear=CLEAR_DISK,
    ),
    "disk_full_live_log": Fault(
        description="the currently written application log itself fills /srv (a runaway "
        "logger); a cleanup must not delete it, so it cannot heal this: a human must",
        command=_transient(DISK_UNIT, FILL, "disk", "/srv", "--live"),
        clear=CLEAR_DISK,
    ),
    "db_pool_exhausted": Fault(
        description=f"the application {APP_USER!r} holds sessions idle in transaction until "
        "PostgreSQL refuses more (max_connections); ending those sessions heals it",
        command=_transient(DB_UNIT, FILL, "db-pool", APP_USER, user=APP_USER),
        clear=_stop(DB_UNIT),
        group=DB,
    ),
    "tls_expiry": _served_certificate(
        "expiring", "nginx serves a lab-CA certificate with 2 days left (inside the 7-day "
        "warning window); heal: a certificate valid beyond the window, served"),
    "tls_expired": _served_certificate(
        "expired", "nginx serves a lab-CA certificate that expired 2 days ago; heal as "
        "tls_expiry"),
    "cpu_runaway": Fault(
        description="a rogue sha256sum outside any unit burns a core (stop or renice it to heal)",
        command=("sh", "-c", _ROGUE),
        clear=("sh", "-c", _UNROGUE),
        settle_clear=_cpu_quiet("sha256sum"),
    ),
    "cpu_runaway_unit": Fault(
        description=f"{DEMO_UNIT}'s own process starts a busy thread (SIGUSR1; restart heals)",
        command=("systemctl", "kill", "--kill-whom=main", "--signal=SIGUSR1", DEMO_UNIT),
        clear=("systemctl", "kill", "--kill-whom=main", "--signal=SIGUSR2", DEMO_UNIT),
        settle_clear=_cpu_quiet("selfheal_demo.py"),
        group=APP,
    ),
    "memory_leak": Fault(
        description=f"deploy demo release {demo_releases.LEAKY}, whose memory grows 20 MB/s up "
                    f"to 384 MB (restart buys time; rolling back to {demo_releases.FIRST} heals)",
        command=demo_releases.deploy_command(demo_releases.LEAKY),
        clear=demo_releases.undeploy_command(demo_releases.LEAKY),
        settle=_demo_scraped_up(),  # both deploy and undeploy restart the app
        group=APP,
    ),
}


def _check(fault: str, host: str) -> LabPaths:
    """The lab paths once ``fault`` and ``host`` are known and fit; TargetError otherwise."""
    if fault not in FAULTS:
        raise TargetError(f"unknown fault {fault!r}; known faults: {', '.join(sorted(FAULTS))}")
    paths = lab_paths()
    state = load_state(paths)
    names = [h.name for h in state.hosts] if state else []
    if host not in names:
        choices = ", ".join(names) if names else "none (run 'selfheal lab up' first)"
        raise TargetError(f"unknown lab host {host!r}; lab hosts: {choices}")
    group = FAULTS[fault].group
    if group is not None and not runs(host, group):
        fits = ", ".join(n for n in names if runs(n, group)) or "none in this lab"
        raise TargetError(f"{fault} needs a host of group {group!r} and {host} is not one; "
                          f"hosts of that group: {fits}")
    return paths


def inject(fault: str, host: str) -> Injection:
    """Inject ``fault`` into lab host ``host``; the recorded ``Injection``.

    Raises ``TargetError`` for an unknown fault or host (naming the valid choices) and
    ``PermanentError`` when the host refused the fault.
    """
    paths = _check(fault, host)
    chosen = FAULTS[fault]
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
    """Undo ``fault`` on lab host ``host`` (idempotent: clearing a fault not there is fine).

    Raises ``TargetError`` like ``inject`` and ``PermanentError`` when the host refused.
    """
    paths = _check(fault, host)
    chosen = FAULTS[fault]
    with locked(paths):
        if chosen.prepare_clear is not None:
            chosen.prepare_clear(paths, host)
        _run(chosen.clear, f"clearing {fault} on {host}", host, paths)
        if chosen.settle is not None:
            chosen.settle(paths, host)
        if chosen.settle_clear is not None:
            chosen.settle_clear(paths, host)
    log.info("cleared %s on %s", fault, host)


def _run(command: tuple[str, ...], doing: str, host: str, paths: LabPaths) -> None:
    result = ssh_run(host, list(command), timeout=15.0, paths=paths)
    if result.returncode != 0:
        raise PermanentError(f"{doing} failed (rc {result.returncode}): "
                             f"{result.stderr.strip() or result.stdout.strip()}")
