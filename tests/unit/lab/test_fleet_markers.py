"""Two labs sharing one image cache (one lab per worktree) never take each other's hosts.

A process whose command line looks like another lab's nspawn of vps1 (same image, same machine
name, its per-host files in the other lab's folder) must be invisible to this lab's scans, which
`up` uses to decide a host already runs and `down` to choose what it ends.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.lab import fleet, procs
from orchestrator.lab.paths import LabPaths


def _lab(tmp_path: Path, name: str) -> LabPaths:
    return LabPaths(repo=tmp_path / name, lab_dir=tmp_path / name / ".lab",
                    cache_dir=tmp_path / "shared-cache")


@pytest.fixture
def other_labs_vps1(tmp_path: Path) -> Iterator[tuple[int, LabPaths]]:
    other = _lab(tmp_path, "other")
    argv = [sys.executable, "-c", "import time; time.sleep(60)",
            fleet._image_marker(other), "--machine=vps1",
            f"--bind-ro={other.lab_dir}/hosts/vps1/sshd-lab.conf:/etc/ssh/lab.conf"]
    proc = subprocess.Popen(argv)
    try:
        assert procs.wait_until(lambda: procs.is_ours(proc.pid, "--machine=vps1"), 10.0)
        yield proc.pid, other
    finally:
        proc.kill()
        proc.wait()


def test_a_scan_finds_only_its_own_labs_hosts(other_labs_vps1: tuple[int, LabPaths],
                                              tmp_path: Path) -> None:
    pid, other = other_labs_vps1
    mine = _lab(tmp_path, "mine")
    assert mine.image_dir == other.image_dir  # the shared cache: the image alone cannot tell
    assert fleet._host_pid(mine, "vps1", None) is None
    assert fleet._host_pid(mine, "vps1", pid) is None  # a recorded PID of another lab's host
    assert "vps1" not in fleet._running_hosts(mine)
    assert fleet._host_pid(other, "vps1", None) == pid
    assert fleet._running_hosts(other) == ["vps1"]
