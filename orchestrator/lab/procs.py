"""Background processes of the lab: start them detached, tell whether they live, end them.

Called by ``fleet`` (one ``systemd-nspawn`` per host) and ``prometheus``. Processes are started
in their own session with output to a log file, so they outlive the CLI that started them. A
PID is only trusted when its command line still contains the lab's own marker (the image path or
the Prometheus config path), so a recycled PID is never killed by mistake.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

log = logging.getLogger(__name__)


def spawn(argv: Sequence[str], log_file: Path, env: Mapping[str, str] | None = None) -> int:
    """Start ``argv`` detached (new session, stdin closed, output to ``log_file``); its PID."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("ab") as out:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
        )
    log.debug("started pid %d: %s", proc.pid, " ".join(argv))
    return proc.pid


def cmdline(pid: int) -> list[str] | None:
    """The command line of a live (not zombie) process, or None."""
    _reap(pid)
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8")
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    if stat.rpartition(")")[2].split()[0] in ("Z", "X"):
        return None
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def _reap(pid: int) -> None:
    """Collect the exit status when ``pid`` is our own exited child, so it is not a zombie."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def is_ours(pid: int | None, *markers: str) -> bool:
    """True when ``pid`` lives and its command line contains every marker."""
    if pid is None:
        return False
    argv = cmdline(pid)
    return argv is not None and all(any(m in arg for arg in argv) for m in markers)


def find(*markers: str) -> list[int]:
    """PIDs of live processes whose command line contains every marker."""
    me = os.getpid()
    pids = [int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit()]
    return sorted(pid for pid in pids if pid != me and is_ours(pid, *markers))


def container_inits(lowerdir: str, bound_from: str) -> dict[int, int]:
    """``{pid: ppid}`` of systemd-nspawn container inits whose root overlays ``lowerdir`` and
    that bind files from the folder ``bound_from``.

    A container's init keeps running when its nspawn is SIGKILLed; its command line names no
    lab path, but its environment says ``container=systemd-nspawn``, its root mount names the
    image as ``lowerdir`` and its bind mounts name their sources under the lab's folder (several
    labs may share one image, so the image alone does not say whose host it is).
    """
    inits = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
            if b"container=systemd-nspawn" not in environ or (entry / "comm").read_text() != (
                "systemd\n"
            ):
                continue
            mounts = (entry / "mountinfo").read_text(encoding="utf-8")
            if f"lowerdir={lowerdir}," not in mounts or f" {bound_from.rstrip('/')}/" not in mounts:
                continue
            stat = (entry / "stat").read_text(encoding="utf-8")
        except OSError:
            continue
        inits[int(entry.name)] = int(stat.rpartition(")")[2].split()[1])
    return inits


def wait_until(check: Callable[[], bool], timeout: float, interval: float = 0.2) -> bool:
    """Poll ``check`` until it is True or ``timeout`` seconds have passed; its last answer."""
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(min(interval, max(0.0, deadline - time.monotonic())))


def terminate(pids: Iterable[int], *markers: str, timeout: float = 10.0) -> None:
    """SIGTERM each lab process (and its process group), then SIGKILL what is left; only
    processes whose command line holds every marker are touched."""
    mine = [pid for pid in pids if is_ours(pid, *markers)]
    if not mine:
        return
    for pid in mine:
        send_signal(pid, signal.SIGTERM)
    if wait_until(lambda: not any(is_ours(pid, *markers) for pid in mine), timeout):
        return
    for pid in mine:
        if is_ours(pid, *markers):
            log.warning("pid %d ignored SIGTERM for %.0f s; sending SIGKILL", pid, timeout)
            send_signal(pid, signal.SIGKILL, group=True)
    wait_until(lambda: not any(is_ours(pid, *markers) for pid in mine), 5.0)


def send_signal(pid: int, sig: signal.Signals, group: bool = False) -> None:
    """Send ``sig`` to ``pid`` (to its whole process group with ``group``); gone is fine."""
    try:
        if group and os.getpgid(pid) == pid:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)
    except ProcessLookupError:
        pass
