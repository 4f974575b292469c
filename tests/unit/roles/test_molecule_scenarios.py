"""Every role has a molecule scenario of the shape issue 11 asks for, checked without the lab.

``ansible/roles/<role>/molecule/default/molecule.yml``: the delegated driver ("default", the lab
is the instance), the shared create/prepare/destroy playbooks of ``ansible/molecule/``, the
role's fault and lab host, host key checking on, and a test sequence that converges, proves
idempotence, verifies, exercises the rollback (side_effect) and verifies again before destroy.
Its playbooks pass ``ansible-playbook --syntax-check``, and every role they include exists with
the tasks file named and is passed only options its argument_specs know (a misspelt option
would otherwise be an unused variable, and the role would run with its default).
tests/e2e/test_molecule.py runs one scenario for real; ``make molecule`` runs them all.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator.lab.faults import FAULTS
from tests.venv_tools import BIN, tools_env

ROOT = Path(__file__).resolve().parents[3]
ROLES = ROOT / "ansible" / "roles"
SCENARIOS = sorted(p.parents[2].name for p in ROLES.glob("*/molecule/default/molecule.yml"))
ROLE_DIRS = sorted(p.name for p in ROLES.iterdir() if (p / "tasks" / "main.yml").is_file())
OWN = ("converge", "verify", "side_effect")
SEQUENCE = ["destroy", "syntax", "create", "prepare", "converge", "idempotence", "verify",
            "side_effect", "verify", "destroy"]


def config(role: str) -> dict:
    return yaml.safe_load((ROLES / role / "molecule" / "default" / "molecule.yml").read_text())


def test_every_role_has_a_scenario() -> None:
    assert len(ROLE_DIRS) >= 7, ROLE_DIRS
    assert SCENARIOS == ROLE_DIRS, f"roles without a scenario: {set(ROLE_DIRS) - set(SCENARIOS)}"


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


def test_scenario_playbooks_pass_the_syntax_check() -> None:
    playbooks = [ROLES / role / "molecule" / "default" / f"{own}.yml"
                 for role in SCENARIOS for own in OWN]
    playbooks += sorted((ROOT / "ansible" / "molecule").glob("*.yml"))
    env = tools_env(ANSIBLE_CONFIG=str(ROOT / "ansible" / "ansible.cfg"))
    done = subprocess.run([str(BIN / "ansible-playbook"), "--syntax-check", "-i", "localhost,",
                           *map(str, playbooks)], cwd=ROOT / "ansible", env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, f"syntax check failed:\n{done.stdout}{done.stderr}"


def included_roles(tasks: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Every include_role of ``tasks``, blocks and rescues included, with the play's vars."""
    for task in tasks:
        for key in ("block", "rescue", "always"):
            yield from included_roles(task.get(key, []))
        if "ansible.builtin.include_role" in task:
            yield {**task["ansible.builtin.include_role"], "vars": task.get("vars", {})}


@pytest.mark.parametrize("role", SCENARIOS)
def test_scenario_includes_roles_with_known_options(role: str) -> None:
    scenario = ROLES / role / "molecule" / "default"
    for own in OWN:
        for play in yaml.safe_load((scenario / f"{own}.yml").read_text()):
            for include in included_roles(play.get("tasks", [])):
                name, entry = include["name"], include.get("tasks_from", "main")
                assert (ROLES / name / "tasks" / f"{entry}.yml").is_file(), (own, name, entry)
                specs = yaml.safe_load((ROLES / name / "meta" / "argument_specs.yml").read_text())
                if entry not in specs["argument_specs"]:
                    continue  # an inner tasks file (e.g. tls_renew's served): no spec
                known = set(specs["argument_specs"][entry].get("options") or {})
                passed = {v for v in {**play.get("vars", {}), **include["vars"]}
                          if v.startswith(f"{name}_") and f"{name}_molecule_" not in v}
                assert passed <= known, f"{own}.yml passes {name}/{entry} unknown {passed - known}"
