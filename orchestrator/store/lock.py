"""File locks in the state dir: one actor at a time on the fleet, one service per machine.

Called by ``wiring`` (the controller's ``exclusive`` lock, taken by every sweep, retry and run by
hand, so a sweep never mistakes another process's run in flight for one a dead controller left)
and by ``selfheal sweep --every`` (the service lock, held for the service's life). An flock is
released by the kernel when the process dies, so a crashed controller never leaves one behind.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from orchestrator.errors import ControllerBusy

ACT_WAIT_S = 300.0  # a sweep or a run by hand waits this long for another one to finish


@contextmanager
def controller_lock(state_dir: Path, wait_s: float = 0.0,
                    name: str = "controller.lock") -> Iterator[None]:
    """Hold ``state_dir/name``; wait up to ``wait_s`` for its holder, then ControllerBusy."""
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / name
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    deadline = time.monotonic() + wait_s
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError as exc:
                if time.monotonic() >= deadline:
                    raise ControllerBusy(
                        f"another selfheal process holds {path} (pid "
                        f"{_holder(path) or 'unknown'}); waited {wait_s:.0f}s: try again when "
                        "it has finished", delay=5.0) from exc
                time.sleep(0.1)
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        yield
    finally:
        os.close(fd)


def _holder(path: Path) -> str:
    try:
        return path.read_text().strip()[:20]
    except OSError:
        return ""
