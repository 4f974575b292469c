"""The roles' molecule scenarios (issue 11), run against the lab fleet this session booted.

Each scenario, ``ansible/roles/<role>/molecule/default`` (driver "default", delegated, with the
shared playbooks in ``ansible/molecule/``), reuses the running lab: prepare injects the role's
fault with ``selfheal lab inject``, converge runs the role, idempotence runs it again and expects
no change, verify runs the role's tasks/verify.yml, side_effect injects the fault again, fixes it
and runs tasks/rollback.yml, verify runs again, and destroy clears the fault.

The suite runs one scenario, service_restart's (``IN_SUITE``), to keep ``make test`` within its
time budget; ``make molecule`` runs them all. Measured here: disk_cleanup's full ``molecule
test`` took 28 min of wall time for 65 s of CPU at a load average of 45-80 on 2 cores (other
agents' test suites), so the wall time says more about the machine's load than the scenario.
``tests/unit/roles/test_molecule_scenarios.py`` checks every scenario's shape without the lab.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

ROLES = Path(__file__).resolve().parents[2] / "ansible" / "roles"
SCENARIOS = sorted(p.parents[2].name for p in ROLES.glob("*/molecule/default/molecule.yml"))
IN_SUITE = ("service_restart",)
BIN = Path(sys.executable).parent
# every step of the scenario's test_sequence that touches the role
STEPS = ("create", "prepare", "converge", "idempotence", "side_effect", "verify", "destroy")


def test_the_scenarios_in_the_suite_exist() -> None:
    assert set(IN_SUITE) <= set(SCENARIOS), f"no scenario for {set(IN_SUITE) - set(SCENARIOS)}"


@pytest.mark.parametrize("role", IN_SUITE)
def test_molecule_scenario_passes(lab_fleet: None, role: str) -> None:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
           "NO_COLOR": "1"}
    done = subprocess.run([str(BIN / "molecule"), "test"], cwd=ROLES / role, env=env,
                          capture_output=True, text=True, timeout=900, check=False)
    report = done.stdout + done.stderr
    assert done.returncode == 0, f"molecule test of {role} failed:\n{report[-6000:]}"
    for step in STEPS:
        assert f"default > {step}: Executed: Successful" in report, (
            f"{role}: molecule's {step} did not run successfully:\n{report[-6000:]}")
