"""The runaway_process role's choice of process (its module, library/runaway_process_pick.py).

The module runs on the host; these tests load it from the role folder, feed its pure ``pick``
crafted samples (each file's path to its text, as ``read_sample`` returns them), and read the
real /proc of this machine with ``read_sample``.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from orchestrator.core.policy import DEFAULT_PROTECTED_UNITS
from tests.conftest import ROLES_DIR, RULES_DIR

ROLE = ROLES_DIR / "runaway_process"


def _module() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "runaway_process_module", ROLE / "library" / "runaway_process_pick.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


MOD = _module()
PROTECTED = list(DEFAULT_PROTECTED_UNITS)
HYBRID = "9:name=systemd:{path}\n4:memory:/\n0::{path}"
Sample = dict[str, str]


def stat(pid: int, comm: str, ticks: int, ppid: int = 1, nice: int = 0,
         start: int = 1000) -> str:
    """A /proc/PID/stat line: utime = ticks, stime = 0."""
    fields = ["S", str(ppid), str(pid), str(pid), "0", "-1", "4194560", "0", "0", "0", "0",
              str(ticks), "0", "0", "0", "20", str(nice), "1", "0", str(start), "1000", "100"]
    return f"{pid} ({comm}) {' '.join(fields)}\n"


def sample(uptime: float, procs: list[str], cgroups: dict[int, str] | None = None) -> Sample:
    files = {"/proc/uptime": f"{uptime} 100.00\n"}
    for proc in procs:
        pid = int(proc.split()[0])
        files[f"/proc/{pid}/stat"] = proc
        if pid in (cgroups or {}):
            files[f"/proc/{pid}/cgroup"] = (cgroups or {})[pid] + "\n"
    return files


Pick = Callable[..., dict[str, Any]]


def pick(first: Sample, second: Sample, action: str = "stop", minimum: float = 10,
         exclude: tuple[int, ...] = ()) -> dict[str, Any]:
    choose: Pick = MOD.pick
    return choose(first, second, PROTECTED, ["sshd"], minimum, action, exclude)


def two(procs_then: list[str], procs_now: list[str], cgroups: dict[int, str],
        elapsed: float = 1.0) -> tuple[Sample, Sample]:
    return sample(100.0, procs_then), sample(100.0 + elapsed, procs_now, cgroups)


def unit(path: str) -> str:
    return HYBRID.format(path=path)


def test_ranks_by_cpu_between_the_samples_not_by_lifetime_average() -> None:
    # the app ran idle for a long time (big total) and spins now; the other used a lot long ago
    first, second = two(
        [stat(30, "python3", 5000), stat(40, "old-batch", 90000)],
        [stat(30, "python3", 5090), stat(40, "old-batch", 90001)],
        {30: unit("/system.slice/app.service"), 40: unit("/system.slice/batch.service")})
    chosen = pick(first, second)
    assert (chosen["pid"], chosen["cpu_percent"], chosen["decision"]) == (30, 90.0, "restart_unit")
    assert chosen["unit"] == "app.service"
    assert chosen["top"][0].startswith("30 python3 90.0%")


def test_a_process_outside_any_unit_gets_the_policy_action() -> None:
    first, second = two([stat(205, "sha256sum", 100)], [stat(205, "sha256sum", 180)],
                        {205: unit("/")})
    for action in ("stop", "renice"):
        chosen = pick(first, second, action)
        assert (chosen["decision"], chosen["unit"], chosen["cgroup"]) == (action, "", "/")


def test_a_process_in_a_login_scope_is_not_a_service_to_restart() -> None:
    first, second = two([stat(77, "miner", 0)], [stat(77, "miner", 95)],
                        {77: unit("/user.slice/user-1000.slice/session-4.scope")})
    chosen = pick(first, second, "renice")
    assert (chosen["decision"], chosen["unit"]) == ("renice", "session-4.scope")


def test_pid_1_is_refused() -> None:
    first, second = two([stat(1, "systemd", 0, ppid=0)], [stat(1, "systemd", 80, ppid=0)],
                        {1: unit("/init.scope")})
    chosen = pick(first, second)
    assert chosen["decision"] == "refuse" and "PID 1" in chosen["reason"]


def test_sshd_is_refused_even_outside_a_unit() -> None:
    first, second = two([stat(167, "sshd", 0, ppid=45)], [stat(167, "sshd", 70, ppid=45)],
                        {167: unit("/")})
    chosen = pick(first, second)
    assert chosen["decision"] == "refuse" and "sshd" in chosen["reason"]


@pytest.mark.parametrize("unit_name", ["ssh.service", "prometheus-process-exporter.service",
                                       "dbus.service", "systemd-journald.service",
                                       "user@0.service"])
def test_a_process_of_a_protected_unit_is_refused(unit_name: str) -> None:
    first, second = two([stat(50, "busy", 0)], [stat(50, "busy", 60)],
                        {50: unit(f"/system.slice/{unit_name}")})
    chosen = pick(first, second)
    assert chosen["decision"] == "refuse" and unit_name in chosen["reason"]


def test_a_refused_top_process_is_not_skipped_for_the_next_one() -> None:
    first, second = two([stat(167, "sshd", 0, ppid=45), stat(300, "worker", 0)],
                        [stat(167, "sshd", 70, ppid=45), stat(300, "worker", 40)],
                        {167: unit("/system.slice/ssh.service"),
                         300: unit("/system.slice/worker.service")})
    assert pick(first, second)["decision"] == "refuse"


def test_nothing_above_the_threshold_is_nothing_to_do() -> None:
    first, second = two([stat(30, "idle", 0)], [stat(30, "idle", 5)],
                        {30: unit("/system.slice/app.service")})
    chosen = pick(first, second, minimum=10)
    assert chosen["decision"] == "none" and "5.0%" in chosen["reason"]
    assert "no process above 10% CPU" in chosen["reason"]


def test_processes_seen_once_or_with_a_reused_pid_are_not_ranked() -> None:
    first, second = two(
        [stat(30, "app", 0), stat(60, "old", 0, start=500)],
        [stat(30, "app", 20), stat(60, "new", 500, start=900), stat(90, "grep", 300)],
        {30: unit("/system.slice/app.service"), 60: unit("/"), 90: unit("/")})
    chosen = pick(first, second)
    assert chosen["pid"] == 30 and len(chosen["top"]) == 1


def test_the_modules_own_process_is_not_ranked() -> None:
    first, second = two([stat(30, "app", 0), stat(31, "python3", 0)],
                        [stat(30, "app", 20), stat(31, "python3", 90)],
                        {30: unit("/system.slice/app.service"), 31: unit("/user.slice")})
    assert pick(first, second, exclude=(31,))["pid"] == 30
    assert pick(first, second)["pid"] == 31


def test_reads_this_machines_proc() -> None:
    first = MOD.read_sample(with_cgroup=False)
    time.sleep(0.05)  # /proc/uptime ticks every 10 ms: two reads in one tick are refused
    second = MOD.read_sample(with_cgroup=True)
    me = os.getpid()
    assert f"/proc/{me}/stat" in first and f"/proc/{me}/cgroup" not in first
    assert f"/proc/{me}/cgroup" in second
    chosen = pick(first, second, minimum=1000, exclude=(me,))
    assert chosen["decision"] == "none" and "nothing to do" in chosen["reason"]
    assert not any(line.startswith(f"{me} ") for line in chosen["top"])


def test_the_command_line_reads_as_ps_shows_it(tmp_path: Path) -> None:
    me = os.getpid()
    shown = subprocess.run(["ps", "-ww", "-o", "args=", "-p", str(me)], capture_output=True,
                           text=True, check=True).stdout.strip()
    assert MOD.cmdline_of(me, "python") == shown
    (tmp_path / "2").mkdir()
    (tmp_path / "2" / "cmdline").write_bytes(b"")
    assert MOD.cmdline_of(2, "kthreadd", proc=str(tmp_path)) == "[kthreadd]"
    assert MOD.cmdline_of(3, "gone", proc=str(tmp_path)) == ""


def test_a_process_that_ended_while_proc_was_read_is_missing(tmp_path: Path) -> None:
    (tmp_path / "uptime").write_text("100.00 50.00\n")
    (tmp_path / "42").mkdir()
    (tmp_path / "42" / "stat").write_text(stat(42, "app", 7))
    (tmp_path / "42" / "cgroup").write_text("0::/system.slice/app.service\n")
    (tmp_path / "43").mkdir()  # its files are gone: the process ended
    (tmp_path / "self").mkdir()
    read = MOD.read_sample(with_cgroup=True, proc=str(tmp_path))
    assert read == {"/proc/uptime": "100.00 50.00\n", "/proc/42/stat": stat(42, "app", 7),
                    "/proc/42/cgroup": "0::/system.slice/app.service\n"}


def test_comm_with_spaces_and_parens_and_elapsed_time_scale() -> None:
    first, second = two([stat(70, "we(ird) na)me", 0)], [stat(70, "we(ird) na)me", 100)],
                        {70: unit("/")}, elapsed=2.0)
    chosen = pick(first, second)
    assert (chosen["comm"], chosen["cpu_percent"]) == ("we(ird) na)me", 50.0)


def test_unified_only_hierarchy_and_delegated_subgroups() -> None:
    unit_of = MOD.unit_of
    assert unit_of(["0::/system.slice/app.service"]) == ("app.service", "/system.slice/app.service")
    assert unit_of(["0::/system.slice/app.service/worker"])[0] == "app.service"
    assert unit_of(["0::/system.slice"])[0] == ""
    assert unit_of(["1:name=systemd:/system.slice/a.service", "0::/"])[0] == "a.service"


def test_bad_input_is_refused_with_the_fix() -> None:
    first, second = two([stat(1, "x", 0)], [stat(1, "x", 1)], {1: unit("/")})
    with pytest.raises(ValueError, match="runaway_process_action"):
        pick(first, second, action="kill")
    with pytest.raises(ValueError, match="uptime"):
        pick({"/proc/1/stat": stat(1, "x", 0)}, second)
    with pytest.raises(ValueError, match="not later"):
        pick(second, first)


def test_the_roles_protected_units_are_policys() -> None:
    defaults = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    policy = yaml.safe_load((RULES_DIR / "policy.yml").read_text())
    assert defaults["runaway_process_protected_units"] == list(DEFAULT_PROTECTED_UNITS)
    assert policy["protected_units"] == list(DEFAULT_PROTECTED_UNITS)
