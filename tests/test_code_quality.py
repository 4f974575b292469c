"""ruff and mypy stay clean: the configured checks run as part of the suite."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.background import CHECKS
from tests.venv_tools import BIN

ROOT = Path(__file__).resolve().parent.parent


def test_ruff_is_clean() -> None:
    done = subprocess.run([str(BIN / "ruff"), "check", "orchestrator", "tests", "benchmarks"],
                          cwd=ROOT, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout[-3000:]


def test_mypy_is_clean() -> None:
    code, output = CHECKS["mypy"].result()  # started when collection ended
    assert code == 0, output[-3000:]
