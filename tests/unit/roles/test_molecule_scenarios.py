"""Every role's molecule scenario has the shape issue 11 asks for, checked without the lab.

``ansible/roles/<role>/molecule/default/molecule.yml``: the delegated driver ("default", the lab
is the instance), the shared create/prepare/destroy playbooks of ``ansible/molecule/``, the
role's fault and lab host, host key checking on, and a test sequence that converges, proves
idempotence, verifies, exercises the rollback (side_effect) and verifies again before destroy.
tests/e2e/test_molecule.py runs a scenario for real; ``make molecule`` runs them all.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from orchestrator.lab.faults import FAULTS

ROOT = Path(__file__).resolve().parents[3]
ROLES = ROOT / "ansible" / "roles"
SCENARIOS = sorted(p.parents[2].name for p in ROLES.glob("*/molecule/default/molecule.yml"))
SEQUENCE = ["destroy", "syntax", "create", "prepare", "converge", "idempotence", "verify",
            "side_effect", "verify", "destroy"]


def config(role: str) -> dict:
    return yaml.safe_load((ROLES / role / "molecule" / "default" / "molecule.yml").read_text())


def test_the_first_scenarios_exist() -> None:
    assert {"service_restart", "db_terminate_idle", "disk_cleanup"} <= set(SCENARIOS)


@pytest.mark.parametrize("role", SCENARIOS)
def test_scenario_runs_the_whole_sequence(role: str) -> None:
    assert config(role)["scenario"]["test_sequence"] == SEQUENCE


@pytest.mark.parametrize("role", SCENARIOS)
def test_scenario_uses_the_lab_and_the_shared_playbooks(role: str) -> None:
    cfg = config(role)
    assert cfg["driver"]["name"] == "default"
    scenario = ROLES / role / "molecule" / "default"
    for step in ("create", "prepare", "destroy"):
        shared = (scenario / cfg["ansible"]["playbooks"][step]).resolve()
        assert shared == ROOT / "ansible" / "molecule" / f"{step}.yml", (role, step, shared)
    for own in ("converge", "verify", "side_effect"):
        assert (scenario / f"{own}.yml").is_file(), f"{role}: no {own}.yml"
    env = cfg["ansible"]["env"]
    assert env["SELFHEAL_MOLECULE_ROLE"] == role
    assert env["SELFHEAL_MOLECULE_FAULT"] in FAULTS, env
    assert cfg["ansible"]["cfg"]["defaults"]["host_key_checking"] is True


@pytest.mark.parametrize("role", SCENARIOS)
def test_scenario_plays_target_its_lab_host(role: str) -> None:
    host = config(role)["ansible"]["env"]["SELFHEAL_MOLECULE_HOST"]
    scenario = ROLES / role / "molecule" / "default"
    for own in ("converge", "verify"):
        plays = yaml.safe_load((scenario / f"{own}.yml").read_text())
        assert [play["hosts"] for play in plays] == [host], (role, own)
