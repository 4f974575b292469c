"""Every role has a README a team can use it from, and the README stays true (issue 11).

A README must name every option of every entry point in the role's meta/argument_specs.yml, state
the risk tier of each catalog entry that runs the role as rules/remediations.yml has it, say what
its rollback restores, and carry an example play whose variables are options of the role.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
ROLES = ROOT / "ansible" / "roles"
ROLE_NAMES = sorted(p.name for p in ROLES.iterdir() if (p / "tasks" / "main.yml").is_file())
CATALOG = yaml.safe_load((ROOT / "rules" / "remediations.yml").read_text())["remediations"]
TIER = re.compile(r"`([A-Za-z0-9_]+)`: risk tier (\d)")
ROW = re.compile(r"^\| `([A-Za-z0-9_]+)` \|", re.M)
EXAMPLE = re.compile(r"^## Example play\n+```yaml\n(.*?)^```", re.M | re.S)


def readme(role: str) -> str:
    path = ROLES / role / "README.md"
    assert path.is_file(), f"ansible/roles/{role}/README.md is missing"
    return path.read_text()


def entry_points(role: str) -> dict[str, dict[str, Any]]:
    specs = yaml.safe_load((ROLES / role / "meta" / "argument_specs.yml").read_text())
    return {name: spec.get("options") or {} for name, spec in specs["argument_specs"].items()}


def test_the_roles_are_found() -> None:
    assert {"service_restart", "db_terminate_idle", "disk_cleanup"} <= set(ROLE_NAMES)


@pytest.mark.parametrize("role", ROLE_NAMES)
def test_readme_names_every_option(role: str) -> None:
    text = readme(role)
    options = {name for opts in entry_points(role).values() for name in opts}
    missing = sorted(name for name in options if f"`{name}`" not in text)
    assert not missing, f"ansible/roles/{role}/README.md does not name {missing}"


@pytest.mark.parametrize("role", ROLE_NAMES)
def test_readme_variables_table_lists_only_options(role: str) -> None:
    options = {name for opts in entry_points(role).values() for name in opts}
    listed = set(ROW.findall(readme(role)))
    assert listed, f"ansible/roles/{role}/README.md has no variables table"
    assert listed <= options, (
        f"ansible/roles/{role}/README.md lists {sorted(listed - options)}, which "
        "meta/argument_specs.yml does not have")


@pytest.mark.parametrize("role", ROLE_NAMES)
def test_readme_states_the_catalogs_risk_tiers(role: str) -> None:
    text = readme(role)
    stated = {entry: int(tier) for entry, tier in TIER.findall(text)}
    catalog = {name: int(entry["risk_tier"]) for name, entry in CATALOG.items()
               if entry["role"] == role}
    assert stated == catalog, (
        f"ansible/roles/{role}/README.md states risk tiers {stated}; rules/remediations.yml "
        f"has {catalog} (write each as '`ENTRY`: risk tier N')")


@pytest.mark.parametrize("role", ROLE_NAMES)
def test_readme_has_the_sections_a_team_needs(role: str) -> None:
    text = readme(role)
    for needed in ("## Risk tier", "## Variables", "## Example play", "rollback.yml"):
        assert needed in text, f"ansible/roles/{role}/README.md has no {needed!r}"


@pytest.mark.parametrize("role", ROLE_NAMES)
def test_example_play_uses_only_the_roles_options(role: str) -> None:
    match = EXAMPLE.search(readme(role))
    assert match, f"ansible/roles/{role}/README.md: no ```yaml block under '## Example play'"
    play = yaml.safe_load(match.group(1))
    options = entry_points(role)
    used = [task for p in play for task in p["tasks"]
            if task.get("ansible.builtin.include_role", {}).get("name") == role]
    assert used, f"the example play of {role} does not include the role"
    for task in used:
        entry = task["ansible.builtin.include_role"].get("tasks_from", "main")
        unknown = sorted(set(task.get("vars", {})) - set(options[entry]))
        assert not unknown, f"{role} example sets {unknown}, not options of its {entry} entry"
