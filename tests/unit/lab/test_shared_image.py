"""Two labs (worktrees) sharing one image cache: each finds and ends only its own hosts.

Real processes stand in for the hosts' systemd-nspawn: their command lines carry the same
``--directory``/``--machine``/``--bind-ro`` arguments a lab host's nspawn carries
(``orchestrator/lab/fleet.py``), so the lookups read them from /proc as they read a real host's.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.lab import fleet, procs
from orchestrator.lab.paths import LabPaths

SLEEP = "import time; time.sleep(60)"


def _paths(tmp_path: Path, worktree: str) -> LabPaths:
    return LabPaths(repo=tmp_path / worktree, lab_dir=tmp_path / worktree / ".lab",
                    cache_dir=tmp_path / "shared-cache")


@pytest.fixture
def two_labs(tmp_path: Path) -> Iterator[tuple[LabPaths, LabPaths, dict[str, int]]]:
    a, b = _paths(tmp_path, "wt-a"), _paths(tmp_path, "wt-b")
    started = {}
    for label, paths in (("a", a), ("b", b)):
        argv = [sys.executable, "-c", SLEEP, f"--directory={paths.image_dir}", "--machine=vps1",
                f"--bind-ro={paths.host_dir('vps1')}/sshd-lab.conf:/etc/ssh/sshd_config.d/l"]
        started[label] = subprocess.Popen(argv)
    yield a, b, {k: p.pid for k, p in started.items()}
    for proc in started.values():
        proc.kill()
        proc.wait()


def test_a_lab_adopts_only_its_own_host_not_the_one_of_a_lab_on_the_same_image(
        two_labs: tuple[LabPaths, LabPaths, dict[str, int]]) -> None:
    a, b, pids = two_labs
    assert procs.wait_until(lambda: fleet._host_pid(a, "vps1", None) is not None, 5.0)
    assert fleet._host_pid(a, "vps1", None) == pids["a"]
    assert fleet._host_pid(b, "vps1", None) == pids["b"]
    # a pid recorded by mistake (or reused) that belongs to the other lab is not taken
    assert fleet._host_pid(a, "vps1", pids["b"]) == pids["a"]
    assert fleet._running_hosts(a) == ["vps1"]


def test_terminating_one_labs_hosts_leaves_the_other_labs_running(
        two_labs: tuple[LabPaths, LabPaths, dict[str, int]]) -> None:
    a, b, pids = two_labs
    markers = fleet.host_markers(a)
    procs.terminate([pids["a"], pids["b"]], *markers, timeout=5.0)
    assert not procs.is_ours(pids["a"], *markers)
    assert procs.is_ours(pids["b"], *fleet.host_markers(b))
