"""The checkout venv's own tools (mypy, ansible-lint, ansible-playbook, molecule) for tests that
run them as commands: their folder, and an environment that finds them first on PATH (Ansible's
tools call each other by name)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

BIN = Path(sys.executable).parent


def tools_env(**extra: str) -> dict[str, str]:
    """This process's environment with the venv's bin first on PATH, no colours, plus ``extra``."""
    return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            "NO_COLOR": "1", **extra}
