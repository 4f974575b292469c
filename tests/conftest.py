"""Shared fixtures: the project's real rules and roles, temporary state dirs, and selfheal
installed from its wheel (built once per session, in the background from the end of collection:
tests/integration/test_install.py and tests/e2e/test_installed_heal.py only run its commands,
each in its own working folder). The slow static checks start then too (tests/background.py)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from orchestrator.config import PROJECT_ROOT
from orchestrator.rules import Rules, load_rules
from tests import background

RULES_DIR = PROJECT_ROOT / "rules"
ROLES_DIR = PROJECT_ROOT / "ansible" / "roles"


@pytest.fixture(autouse=True)
def _root_logger_restored() -> Iterator[None]:
    """A test that runs the CLI sets the root logger up (level, JSON lines): undo it after, so
    no later test, and nothing at interpreter exit, logs through another test's settings."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture(scope="session")
def rules() -> Rules:
    return load_rules(RULES_DIR, ROLES_DIR)


def pytest_collection_finish(session: pytest.Session) -> None:
    if not session.config.option.collectonly:
        background.start_for([item.nodeid for item in session.items])


def pytest_sessionfinish(session: pytest.Session) -> None:
    background.stop_all()


@pytest.fixture(scope="session")
def installed_selfheal() -> Path:
    """The venv selfheal's wheel was installed into, outside the checkout (built once)."""
    return background.INSTALLED.result()


@pytest.fixture
def rules_copy(tmp_path: Path) -> Path:
    """A writable copy of the rules folder for tests that break it."""
    target = tmp_path / "rules"
    target.mkdir()
    for f in RULES_DIR.glob("*.yml"):
        (target / f.name).write_text(f.read_text())
    return target


def write_fault_rules(rules_dir: Path, text: str) -> None:
    """Write a test's ``signals:`` + ``faults:`` YAML as signals.yml and faults.yml.

    The project's own signals are kept beside the test's (the catalog's verify signals must
    exist); only the signals the test's faults use are ever queried.
    """
    data = yaml.safe_load(text)
    signals = yaml.safe_load((RULES_DIR / "signals.yml").read_text())["signals"]
    signals.update(data.get("signals") or {})
    rules_dir.mkdir(parents=True, exist_ok=True)
    (rules_dir / "signals.yml").write_text(yaml.safe_dump({"signals": signals}))
    (rules_dir / "faults.yml").write_text(yaml.safe_dump({"faults": data["faults"]}))


def write_detection_rules(rules_dir: Path, text: str) -> None:
    """Write a test's standalone detection YAML (its own ``signals:``, ``threshold`` for
    ``firing_when``) as signals.yml and detection.yml."""
    data = yaml.safe_load(text)
    signals = {name: {("firing_when" if k == "threshold" else k): v for k, v in body.items()}
               for name, body in data.pop("signals").items()}
    rules_dir.mkdir(parents=True, exist_ok=True)
    catalog = rules_dir / "signals.yml"
    if catalog.exists():  # beside a test's fault rules: one catalog holds both
        signals = {**yaml.safe_load(catalog.read_text())["signals"], **signals}
    catalog.write_text(yaml.safe_dump({"signals": signals}))
    (rules_dir / "detection.yml").write_text(yaml.safe_dump(data))
