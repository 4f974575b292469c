"""The roles' molecule scenarios (issue 11), run against the lab fleet this session booted.

Each scenario, ``ansible/roles/<role>/molecule/default`` (driver "default", delegated, with the
shared playbooks in ``ansible/molecule/``), reuses the running lab: prepare injects the role's
fault with ``selfheal lab inject``, converge runs the role, idempotence runs it again and expects
no change, verify runs the role's tasks/verify.yml, side_effect injects the fault again, fixes it
and runs tasks/rollback.yml, verify runs again, and destroy clears the fault.

The suite runs ONE scenario in full, service_restart's (``IN_SUITE``), to keep ``make test`` within
its time budget: it is the cheapest, and it runs the shared create, prepare and destroy playbooks
every scenario uses. ``make molecule`` runs all seven, and
``tests/unit/roles/test_molecule_scenarios.py`` covers every role without the lab (a scenario per
role, its shape, a syntax check of its playbooks, the role options they pass). Measured 2026-11-29
on the 2-core machine shared with two other agents, lab of 3-4 hosts, one ``make molecule`` run
(wall time, load average at the start/end): service_restart 119 s (6.5/5.8), release_rollback 155 s
(6.4/4.2), diagnose 181 s (10.7/10.6), disk_cleanup 199 s (10.6/6.4), runaway_process 208 s
(4.2/6.5), db_terminate_idle 209 s (6.5/10.7), tls_renew 224 s (5.8/10.4): 21.6 min for all seven.
This test alone (service_restart): 120 s at a load of 3.5-7. Wall time here says as much about the
machine's load as about the scenario.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.venv_tools import BIN, tools_env

pytestmark = pytest.mark.e2e

ROLES = Path(__file__).resolve().parents[2] / "ansible" / "roles"
SCENARIOS = sorted(p.parents[2].name for p in ROLES.glob("*/molecule/default/molecule.yml"))
IN_SUITE = ("service_restart",)
# every step of the scenario's test_sequence that touches the role
STEPS = ("create", "prepare", "converge", "idempotence", "side_effect", "verify", "destroy")


def test_the_scenarios_in_the_suite_exist() -> None:
    assert set(IN_SUITE) <= set(SCENARIOS), f"no scenario for {set(IN_SUITE) - set(SCENARIOS)}"


@pytest.mark.parametrize("role", IN_SUITE)
def test_molecule_scenario_passes(lab_fleet: None, role: str) -> None:
    done = subprocess.run([str(BIN / "molecule"), "test"], cwd=ROLES / role, env=tools_env(),
                          capture_output=True, text=True, timeout=900, check=False)
    report = done.stdout + done.stderr
    assert done.returncode == 0, f"molecule test of {role} failed:\n{report[-6000:]}"
    for step in STEPS:
        assert f"default > {step}: Executed: Successful" in report, (
            f"{role}: molecule's {step} did not run successfully:\n{report[-6000:]}")
