"""Bringing the lab fleet up, looking at it, and taking it down again without leftovers.

Called by ``orchestrator.cli.lab`` (``up``/``status``/``down``), by the e2e tests and by
``benchmarks/mttr.py``. Each host ``vpsN`` is a ``systemd-nspawn`` container booted from the
shared cached image with ``--volatile=overlay`` (the image stays read-only; each host writes to
its own tmpfs overlay, so nothing is copied at boot and nothing is left on disk) on the machine's
own network, with its services bound to ``127.0.1.N``. Every ``127.0.0.0/8`` address is local on
Linux, so no loopback alias is needed. The controller-side Prometheus scrapes all hosts.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

from orchestrator.errors import ConfigError, PermanentError
from orchestrator.lab import (
    cgroups,
    generated,
    hostconfig,
    image,
    layout,
    procs,
    prometheus,
    services_acme,
    services_blackbox,
    services_postgres,
    services_process,
    services_web,
)
from orchestrator.lab.paths import (
    DEMO_PORT,
    HOST_PREFIX,
    MAX_HOSTS,
    NODE_EXPORTER_PORT,
    LabPaths,
    host_address,
    host_name,
    lab_paths,
)
from orchestrator.lab.probe import http_ok, ssh_ok, ssh_run
from orchestrator.lab.progress import ProgressFn, report
from orchestrator.lab.state import (
    HostRecord,
    HostStatus,
    LabState,
    LabStatus,
    PrometheusStatus,
    load_state,
    locked,
    save_state,
)

log = logging.getLogger(__name__)

BOOT_TIMEOUT_S = 90.0
SCRAPE_TIMEOUT_S = 30.0
POWEROFF_TIMEOUT_S = 15.0


def _image_marker(paths: LabPaths) -> str:
    return f"--directory={paths.image_dir}"


def host_markers(paths: LabPaths) -> tuple[str, str]:
    """What this lab's nspawn command lines hold: the image and binds from this lab's folder.
    Labs of other worktrees may share the image cache; their hosts are not ours to adopt or end."""
    return _image_marker(paths), f"={paths.lab_dir}/"


def _nspawn_argv(paths: LabPaths, name: str, binds: Sequence[str]) -> list[str]:
    return [
        "systemd-nspawn",
        "--quiet",
        "--register=no",
        "--keep-unit",
        _image_marker(paths),
        "--volatile=overlay",
        f"--machine={name}",
        f"--hostname={name}",
        "--console=read-only",
        "--link-journal=no",
        "--tmpfs=/srv:size=64M",
        *binds,
        "--boot",
    ]


def _host_pid(paths: LabPaths, name: str, recorded: int | None) -> int | None:
    """The PID of ``name``'s nspawn: the recorded one if it is still ours, else a scan."""
    markers = (*host_markers(paths), f"--machine={name}")
    if procs.is_ours(recorded, *markers):
        return recorded
    found = procs.find(*markers)
    return found[0] if found else None


def _running_hosts(paths: LabPaths) -> list[str]:
    """Names of the lab hosts whose nspawn runs, found by command line alone."""
    names = []
    for pid in procs.find(*host_markers(paths)):
        for arg in procs.cmdline(pid) or ():
            if arg.startswith(f"--machine={HOST_PREFIX}"):
                names.append(arg.removeprefix("--machine="))
    return names


def _kill_orphans(paths: LabPaths) -> None:
    """SIGKILL this lab's container inits whose nspawn is gone (it was SIGKILLed); their hosts
    die."""
    nspawns = set(procs.find(*host_markers(paths)))
    inits = procs.container_inits(str(paths.image_dir), str(paths.lab_dir))
    orphans = [pid for pid, parent in inits.items() if parent not in nspawns]
    for pid in orphans:
        log.warning("killing orphaned lab container init %d (its nspawn is gone)", pid)
        procs.send_signal(pid, signal.SIGKILL)
    if orphans and not procs.wait_until(
        lambda: not set(orphans)
        & set(procs.container_inits(str(paths.image_dir), str(paths.lab_dir))),
        10.0,
    ):
        raise PermanentError(f"orphaned lab hosts {orphans} did not die on SIGKILL")


def _check_environment() -> None:
    if os.geteuid() != 0:
        raise PermanentError("the lab needs root (systemd-nspawn, loopback services)")
    for tool, package in (
        ("systemd-nspawn", "systemd-container"),
        ("ssh-keygen", "openssh-client"),
    ):
        if shutil.which(tool) is None:
            raise PermanentError(f"{tool} is missing: apt-get install -y {package}")


def up(hosts: int = 3, progress: ProgressFn | None = None) -> LabState:
    """Boot ``vps1..vps<hosts>`` and the lab Prometheus; return once every service answers.

    Hosts that already run are left alone, missing ones are started. Raises ``ConfigError`` for
    a bad host count and ``PermanentError`` naming the host, the service and the log file when
    something does not come up within the timeout.
    """
    if not 1 <= hosts <= MAX_HOSTS:
        raise ConfigError(f"--hosts must be between 1 and {MAX_HOSTS}, not {hosts}")
    _check_environment()
    paths = lab_paths()
    started = time.monotonic()
    with locked(paths):
        old = load_state(paths)
        recorded = {h.name: h.pid for h in old.hosts} if old else {}
        count = max([hosts, *(int(n.removeprefix(HOST_PREFIX)) for n in _running_hosts(paths))])
        names = [host_name(i) for i in range(1, count + 1)]
        pids = {name: _host_pid(paths, name, recorded.get(name)) for name in names}
        already = sorted(name for name, pid in pids.items() if pid)
        image_dir = image.ensure_image(paths, progress, rebuild=not already)
        report(progress, "writing host keys and per-host files")
        hostconfig.ensure_client_key(paths)
        addresses = {name: host_address(int(name.removeprefix(HOST_PREFIX))) for name in names}
        binds = {n: hostconfig.write_host_files(paths, n, a) for n, a in addresses.items()}
        hostconfig.write_known_hosts(paths, addresses)
        _kill_orphans(paths)
        for name in names:
            if pids[name] is None:
                log_file = paths.host_dir(name) / "nspawn.log"
                own = cgroups.create(name)
                argv, env = cgroups.enter_command(own, _nspawn_argv(paths, name, binds[name]))
                pids[name] = procs.spawn(argv, log_file, env)
        report(progress, f"booting {len(names) - len(already)} host(s); {len(already)} running")
        prometheus.write_config(paths, addresses)
        state = LabState(
            image=str(image_dir),
            hosts=tuple(
                HostRecord(n, addresses[n], pids[n], str(paths.host_dir(n) / "nspawn.log"))
                for n in names
            ),
            prometheus_url=prometheus.URL,
            injections=old.injections if old else (),
            started_at=old.started_at if old and already else time.time(),
        )
        save_state(paths, state)  # before waiting: a crash from here on is still cleaned by down
        services_blackbox.start(paths)
        state = replace(state, prometheus_pid=prometheus.start(paths))
        save_state(paths, state)
        generated.write_inventory(paths, addresses)
        if not generated.write_settings(paths):
            report(progress, f"left hand-written {paths.settings_file} alone")
        _wait_for_hosts(paths, state, progress)
        _wait_for_prometheus(paths, state, progress)
    log.info("lab up: %d host(s) in %.1f s", len(names), time.monotonic() - started)
    report(progress, f"lab up: {len(names)} host(s) in {time.monotonic() - started:.1f} s", 1.0)
    return state


def _host_checks(paths: LabPaths, host: HostRecord) -> dict[str, bool]:
    return {
        "ssh": ssh_ok(paths, host.name),
        "node_exporter": http_ok(f"http://{host.address}:{NODE_EXPORTER_PORT}/metrics"),
        "process_exporter": services_process.healthy(host.address),
        **({"demo_app": http_ok(f"http://{host.address}:{DEMO_PORT}/healthz")}
           if layout.runs(host.name, layout.APP) else {}),
        **services_postgres.checks(host.name, host.address),
        **services_web.checks(host.name, host.address),
    }


def _wait_for_hosts(paths: LabPaths, state: LabState, progress: ProgressFn | None) -> None:
    pending = {host.name: host for host in state.hosts}
    failing: dict[str, list[str]] = {}

    def poll() -> bool:
        with ThreadPoolExecutor(max_workers=len(pending)) as pool:
            checks = dict(
                zip(
                    pending,
                    pool.map(lambda h: _host_checks(paths, h), pending.values()),
                    strict=True,
                )
            )
        for name, result in checks.items():
            dead = not procs.is_ours(pending[name].pid, *host_markers(paths))
            if dead:
                raise PermanentError(
                    f"{name}: systemd-nspawn exited during boot; see {pending[name].log}"
                )
            failing[name] = [check for check, ok in result.items() if not ok]
            if not failing[name]:
                del pending[name]
        done = len(state.hosts) - len(pending)
        report(progress, f"{done}/{len(state.hosts)} hosts answer", done / len(state.hosts))
        return not pending

    if not procs.wait_until(poll, BOOT_TIMEOUT_S, interval=0.5):
        problems = "; ".join(
            f"{name}: {', '.join(failing[name])} did not answer (log: {pending[name].log})"
            for name in sorted(pending)
        )
        raise PermanentError(f"lab hosts not up after {BOOT_TIMEOUT_S:.0f} s: {problems}")


def _wait_for_prometheus(paths: LabPaths, state: LabState, progress: ProgressFn | None) -> None:
    report(progress, "waiting for Prometheus to scrape every target")

    def scraped() -> bool:
        if not procs.is_ours(state.prometheus_pid, prometheus.marker(paths)):
            raise PermanentError(f"Prometheus exited; see {paths.prometheus_log}")
        return prometheus.ready() and not prometheus.unscraped(paths)

    if not procs.wait_until(scraped, SCRAPE_TIMEOUT_S, interval=0.5):
        missing = prometheus.unscraped(paths)
        raise PermanentError(
            f"Prometheus at {prometheus.URL} not ready or not scraping {missing} after "
            f"{SCRAPE_TIMEOUT_S:.0f} s; see {paths.prometheus_log}"
        )


def status() -> LabStatus:
    """Check every host (process, ssh, node_exporter, demo app) and Prometheus, in parallel."""
    paths = lab_paths()
    state = load_state(paths)
    hosts = (
        list(state.hosts)
        if state
        else [
            HostRecord(n, host_address(int(n.removeprefix(HOST_PREFIX))), None, "")
            for n in sorted(_running_hosts(paths))
        ]
    )

    def check(host: HostRecord) -> HostStatus:
        pid = _host_pid(paths, host.name, host.pid)
        checks = _host_checks(paths, host)
        if not pid:
            checks = dict.fromkeys(checks, False)
        groups = layout.host_groups(host.name)
        return HostStatus(host.name, host.address, pid, pid is not None, groups, checks)

    with ThreadPoolExecutor(max_workers=max(1, len(hosts))) as pool:
        host_status = tuple(pool.map(check, hosts))
    found = procs.find(prometheus.marker(paths))
    prom_pid = state.prometheus_pid if state and state.prometheus_pid in found else None
    prom_pid = prom_pid or (found[0] if found else None)
    return LabStatus(
        prometheus=PrometheusStatus(
            url=prometheus.URL,
            pid=prom_pid,
            running=prom_pid is not None,
            ready=prom_pid is not None and prometheus.ready(),
        ),
        hosts=host_status,
    )


def lab_is_up() -> bool:
    """True when every lab host and Prometheus answer."""
    return status().healthy


def down(progress: ProgressFn | None = None) -> None:
    """Stop every host and Prometheus the lab started and remove what it wrote; idempotent.

    Works from ``state.json`` when it is readable and from the processes' command lines when it
    is not: hosts are powered off over ssh first, then SIGTERM/SIGKILLed if they linger.
    """
    paths = lab_paths()
    started = time.monotonic()
    with locked(paths):
        state = load_state(paths)
        markers = host_markers(paths)
        recorded = [h.pid for h in state.hosts if h.pid] if state else []
        pids = sorted({*(p for p in recorded if procs.is_ours(p, *markers)),
                       *procs.find(*markers)})
        names = _running_hosts(paths)
        if names:
            report(progress, f"powering off {', '.join(sorted(names))}")
            _poweroff(names)
        if not procs.wait_until(
            lambda: not any(procs.is_ours(p, *markers) for p in pids),
            POWEROFF_TIMEOUT_S,
            interval=0.2,
        ):
            report(progress, "some hosts did not power off; terminating them")
        procs.terminate(pids, *markers, timeout=10.0)
        _kill_orphans(paths)
        cgroups.remove()
        report(progress, "stopping Prometheus")
        prometheus.stop(paths, state.prometheus_pid if state else None)
        services_blackbox.stop(paths)
        services_acme.stop(paths)  # a test that died may leave its ACME server
        _remove_leftovers(paths)
        generated.remove(paths)
    shutil.rmtree(paths.lab_dir, ignore_errors=True)
    log.info("lab down in %.1f s", time.monotonic() - started)
    report(progress, f"lab down in {time.monotonic() - started:.1f} s", 1.0)


def _poweroff(names: Sequence[str]) -> None:
    def off(name: str) -> None:
        result = ssh_run(name, ["systemctl", "poweroff"], timeout=5.0)
        if result.returncode not in (0, 255):  # 255: the connection closed as the host went down
            log.warning("poweroff of %s: rc %d %s", name, result.returncode, result.stderr)

    with ThreadPoolExecutor(max_workers=len(names)) as pool:
        list(pool.map(off, names))


def _remove_leftovers(paths: LabPaths) -> None:
    """Unmount anything left under the lab's folders; remove nspawn snapshot and lock files."""
    roots = (str(paths.lab_dir), str(paths.image_dir))
    for mount_point in reversed(_mount_points()):
        if mount_point.startswith(roots):
            log.warning("unmounting leftover %s", mount_point)
            subprocess.run(["umount", "-l", mount_point], check=False, capture_output=True)
    for leftover in paths.cache_dir.glob(f".#{paths.image_dir.name}*"):
        log.warning("removing leftover nspawn snapshot or lock %s", leftover)
        _remove(leftover)


def _mount_points() -> list[str]:
    with open("/proc/self/mounts", encoding="utf-8") as mounts:
        return [line.split()[1].replace("\\040", " ") for line in mounts]


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
