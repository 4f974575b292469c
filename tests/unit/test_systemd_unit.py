"""deploy/systemd/selfheal-serve.service: hardened as promised, and systemd accepts every line.

``systemd-analyze verify`` exits 0 on an unknown key or a bad value (it only warns), so the test
also fails on any word it prints. ExecStart is pointed at this environment's ``selfheal``,
since verify checks that the command exists.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.config import PROJECT_ROOT

UNIT = PROJECT_ROOT / "deploy" / "systemd" / "selfheal-serve.service"


def service_section() -> dict[str, list[str]]:
    """[Service] keys and their values (a key may repeat, as systemd allows)."""
    values: dict[str, list[str]] = {}
    section = ""
    for line in UNIT.read_text().splitlines():
        line = line.strip()
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
        elif section == "Service" and "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values.setdefault(key, []).append(value)
    return values


def test_the_unit_is_hardened_and_writes_only_its_state_dir() -> None:
    got = service_section()
    assert got["User"] == ["selfheal"] and got["Group"] == ["selfheal"]
    assert got["NoNewPrivileges"] == ["yes"]
    assert got["ProtectSystem"] == ["strict"]
    assert got["ReadWritePaths"] == ["/var/lib/selfheal"]
    assert got["StateDirectory"] == ["selfheal"]
    assert got["CapabilityBoundingSet"] == [""]
    assert got["ExecStart"][0].endswith("/selfheal serve")
    sysusers = (UNIT.parent / "selfheal.sysusers.conf").read_text()
    assert "u selfheal - " in sysusers and "/var/lib/selfheal" in sysusers


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze here")
def test_systemd_analyze_verify_accepts_it(tmp_path: Path) -> None:
    selfheal = Path(sys.executable).parent / "selfheal"
    assert selfheal.is_file(), "run `make venv`: the selfheal entry point is missing"
    unit = tmp_path / UNIT.name
    unit.write_text(UNIT.read_text().replace("/opt/selfheal/.venv/bin/selfheal", str(selfheal)))
    done = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0 and not (done.stdout + done.stderr).strip(), (
        done.stdout + done.stderr)
    # the check catches what it is for: a misspelt hardening key is reported
    broken = tmp_path / "broken.service"
    broken.write_text(unit.read_text().replace("NoNewPrivileges=", "NoNewPrivilege="))
    worse = subprocess.run(["systemd-analyze", "verify", str(broken)], capture_output=True,
                           text=True, timeout=60, check=False)
    assert "NoNewPrivilege" in worse.stdout + worse.stderr
