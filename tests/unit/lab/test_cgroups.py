"""Unit tests of the per-host cgroup layout (orchestrator/lab/cgroups.py); no host is booted."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from orchestrator.errors import PermanentError
from orchestrator.lab import cgroups

HYBRID = """\
tmpfs /sys/fs/cgroup tmpfs rw,relatime,mode=755 0 0
cgroup /sys/fs/cgroup/cpu cgroup rw,relatime,cpu 0 0
cgroup /sys/fs/cgroup/memory cgroup rw,relatime,memory 0 0
cgroup /sys/fs/cgroup/systemd cgroup rw,relatime,name=systemd 0 0
cgroup2 /sys/fs/cgroup/unified cgroup2 rw,relatime 0 0
"""
UNIFIED = "cgroup2 /sys/fs/cgroup cgroup2 rw,nosuid,nodev,noexec,relatime 0 0\n"


def test_a_hybrid_machine_gives_the_named_systemd_and_the_cgroup2_hierarchy() -> None:
    assert cgroups.host_cgroups("vps2", HYBRID) == [
        Path("/sys/fs/cgroup/systemd/selfheal-lab/vps2"),
        Path("/sys/fs/cgroup/unified/selfheal-lab/vps2"),
    ]


def test_a_unified_machine_gives_one_tree_and_controllers_are_never_touched() -> None:
    assert cgroups.host_cgroups("vps1", UNIFIED) == [Path("/sys/fs/cgroup/selfheal-lab/vps1")]
    assert not any("cpu" in str(p) or "memory" in str(p) for p in cgroups.host_cgroups(
        "vps1", HYBRID))


def test_every_host_gets_a_different_cgroup() -> None:
    assert not set(cgroups.host_cgroups("vps1", HYBRID)) & set(
        cgroups.host_cgroups("vps2", HYBRID))


def test_the_enter_command_joins_each_cgroup_then_runs_the_command(tmp_path: Path) -> None:
    # Real cgroup files need root and a cgroup mount; plain files show what the shell writes.
    first, second = tmp_path / "a", tmp_path / "b"
    for directory in (first, second):
        directory.mkdir()
    argv, env = cgroups.enter_command(
        [first, second], ["sh", "-c", 'echo "$$ ${SELFHEAL_LAB_CGROUPS-}"']
    )
    out = subprocess.run(argv, env=env, capture_output=True, text=True, check=True).stdout.split()
    pid = (first / "cgroup.procs").read_text().strip()
    assert out == [pid]  # exec kept the PID that joined; the variable is not passed on
    assert (second / "cgroup.procs").read_text().strip() == pid


def test_the_enter_command_refuses_to_run_outside_its_cgroup(tmp_path: Path) -> None:
    argv, env = cgroups.enter_command([tmp_path / "missing"], ["true"])
    result = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    assert result.returncode == 125
    assert f"cannot join cgroup {tmp_path / 'missing'}" in result.stderr


def test_create_names_the_cgroup_it_cannot_make(tmp_path: Path) -> None:
    (tmp_path / "unified").write_text("")  # a file where the hierarchy should be
    with pytest.raises(PermanentError, match=r"cannot create the cgroup .*unified.* for lab host"):
        cgroups.create("vps1", f"cgroup2 {tmp_path / 'unified'} cgroup2 rw 0 0\n")


def test_create_makes_the_host_tree_under_each_hierarchy(tmp_path: Path) -> None:
    mounts = f"cgroup2 {tmp_path / 'unified'} cgroup2 rw 0 0\n"
    assert cgroups.create("vps3", mounts) == [tmp_path / "unified" / "selfheal-lab" / "vps3"]
    assert (tmp_path / "unified" / "selfheal-lab" / "vps3").is_dir()


def test_remove_takes_the_lab_tree_away_deepest_first(tmp_path: Path) -> None:
    root = tmp_path / "unified"
    (root / "selfheal-lab" / "vps1" / "payload" / "system.slice").mkdir(parents=True)
    (root / "selfheal-lab" / "vps2").mkdir(parents=True)
    (root / "other").mkdir()
    mounts = f"cgroup2 {root} cgroup2 rw 0 0\n"
    assert cgroups.remove(mounts) == []
    assert sorted(os.listdir(root)) == ["other"]


def test_remove_gives_up_after_its_timeout_and_names_what_is_left(tmp_path: Path) -> None:
    root = tmp_path / "unified"
    held = root / "selfheal-lab" / "vps1"
    held.mkdir(parents=True)
    (held / "a-process").write_text("")  # a plain dir with a file cannot be removed: "busy"
    assert cgroups.remove(f"cgroup2 {root} cgroup2 rw 0 0\n", timeout=0.3) == [
        root / "selfheal-lab",
        held,
    ]
