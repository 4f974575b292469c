"""A controller lock so two sweeps on one machine never act on the same fleet at once.

Called by ``selfheal sweep``. An flock on a file in the state dir: released by the kernel when the
process dies, so a crashed controller never leaves a stale lock behind.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from orchestrator.errors import ControllerBusy


@contextmanager
def controller_lock(state_dir: Path) -> Iterator[None]:
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / "controller.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise ControllerBusy(f"another selfheal sweep holds {path}; wait for it to finish",
                                 delay=5.0) from exc
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        yield
    finally:
        os.close(fd)
