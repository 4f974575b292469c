"""Shared fixtures: the project's real rules and roles, and temporary state dirs."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.config import PROJECT_ROOT
from orchestrator.rules import Rules, load_rules

RULES_DIR = PROJECT_ROOT / "rules"
ROLES_DIR = PROJECT_ROOT / "ansible" / "roles"


@pytest.fixture(scope="session")
def rules() -> Rules:
    return load_rules(RULES_DIR, ROLES_DIR)


@pytest.fixture
def rules_copy(tmp_path: Path) -> Path:
    """A writable copy of the rules folder for tests that break it."""
    target = tmp_path / "rules"
    target.mkdir()
    for f in RULES_DIR.glob("*.yml"):
        (target / f.name).write_text(f.read_text())
    return target
