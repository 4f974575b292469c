"""selfheal as an ops team gets it: the built wheel in a clean venv outside the checkout, offline.

Used by tests/integration/test_install.py (help, bundled files, init, diagnose) and
tests/e2e/test_installed_heal.py (a real heal on the lab). The wheel is built from this checkout
with the locked setuptools; the venv gets exactly the lock's archives from a wheelhouse under
.cache/ (filled once by `pip download` of the lock, with its hashes, and reused while the lock is
unchanged), installed with ``--no-index``. Commands run with an environment cleared of the
checkout's venv and of every SELFHEAL_ variable.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

from orchestrator.config import PROJECT_ROOT

LOCK = PROJECT_ROOT / "requirements.lock"
WHEELHOUSE = PROJECT_ROOT / ".cache" / "wheelhouse"


def clean_env() -> dict[str, str]:
    drop = ("VIRTUAL_ENV", "PYTHONPATH", "SELFHEAL_CONFIG", "PYTHONHOME")
    return {k: v for k, v in os.environ.items() if k not in drop and not k.startswith(
        "SELFHEAL_")}


def sh(*argv: str | Path, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in argv], cwd=cwd, env=clean_env(), text=True,
                          capture_output=True, timeout=timeout, check=False)


def ok(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, f"{done.args}\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    return done.stdout


def fill_wheelhouse() -> None:
    """The lock's archives, hash-checked; fetched again only when the lock changes."""
    stamp = WHEELHOUSE / ".lock-sha256"
    digest = hashlib.sha256(LOCK.read_bytes()).hexdigest()
    if stamp.is_file() and stamp.read_text() == digest:
        return
    WHEELHOUSE.mkdir(parents=True, exist_ok=True)
    ok(sh(sys.executable, "-m", "pip", "download", "-q", "--require-hashes", "--no-deps",
          "-r", LOCK, "-d", WHEELHOUSE, cwd=PROJECT_ROOT, timeout=900))
    stamp.write_text(digest)


def installed_venv(work: Path) -> Path:
    """Build the wheel into ``work/dist`` and install it into the venv ``work/venv``."""
    assert PROJECT_ROOT not in work.parents
    fill_wheelhouse()
    ok(sh(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
          "-w", work / "dist", PROJECT_ROOT, cwd=work))
    wheel = next((work / "dist").glob("selfheal-*.whl"))
    base = getattr(sys, "_base_executable", sys.executable)
    ok(sh(base, "-m", "venv", work / "venv", cwd=work))
    pip = work / "venv" / "bin" / "pip"
    ok(sh(pip, "install", "-q", "--no-compile", "--no-index", "--find-links", WHEELHOUSE,
          "--require-hashes", "-r", LOCK, cwd=work, timeout=900))
    ok(sh(pip, "install", "-q", "--no-index", "--no-deps", wheel, cwd=work))
    return work / "venv"
