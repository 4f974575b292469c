"""Crash the demo app with a plain ``kill -9`` and restart it at once: does the restart hold?

Called by ``benchmarks/lab_restart.py`` (the failure rate over many rounds) and by
``tests/e2e/test_lab.py``. It is the lab's own fidelity check: on a real VPS a restart right
after a crash starts the app; a lab host must behave the same, or selfheal escalates incidents
the lab invented (docs/lab.md, "One cgroup tree per host"). Each round kills the app's main
process on every given host, then restarts it on all of them together (as an Ansible run with
forks does), waits a moment and reads how each unit ended. After reading, the unit's failed state
and start counter are reset so that systemd's start limit (5 starts in 10 s) never decides the
next round.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from orchestrator.lab.paths import DEMO_UNIT
from orchestrator.lab.probe import ssh_run

KILL = f"kill -9 $(systemctl show -p MainPID --value {DEMO_UNIT})"
RESTART = f"systemctl restart {DEMO_UNIT}"
SHOW = f"systemctl show -p ActiveState -p Result -p ExecMainStatus {DEMO_UNIT}"
RECOVER = f"systemctl reset-failed {DEMO_UNIT}; systemctl is-active -q {DEMO_UNIT} || {RESTART}"
# A start that fails does so in the forked child before exec, within milliseconds.
SETTLE_S = 0.5


@dataclass(frozen=True)
class Restart:
    """How one restart after a crash ended on one host."""

    host: str
    active: bool
    result: str  # systemd's Result: success, exit-code, signal, ...
    exec_status: int  # ExecMainStatus: 219 is CGROUP (the child could not join its cgroup)

    @property
    def failed(self) -> bool:
        return not self.active


def _run(host: str, command: str) -> str:
    result = ssh_run(host, command, timeout=20.0)
    if result.returncode == 255:
        raise RuntimeError(f"{host} did not answer ssh: {result.stderr.strip()}")
    return result.stdout


def _show(host: str) -> Restart:
    fields = dict(line.split("=", 1) for line in _run(host, SHOW).splitlines() if "=" in line)
    return Restart(
        host=host,
        active=fields.get("ActiveState") == "active",
        result=fields.get("Result", "unknown"),
        exec_status=int(fields.get("ExecMainStatus") or 0),
    )


def crash_and_restart(hosts: Sequence[str]) -> list[Restart]:
    """One round on ``hosts``: kill -9 everywhere, restart everywhere at once; each outcome."""
    with ThreadPoolExecutor(max_workers=len(hosts)) as pool:
        list(pool.map(lambda host: _run(host, KILL), hosts))
        list(pool.map(lambda host: _run(host, RESTART), hosts))
        time.sleep(SETTLE_S)
        outcomes = list(pool.map(_show, hosts))
        list(pool.map(lambda host: _run(host, RECOVER), hosts))
    return outcomes
