"""`make collection`: the roles build as the Ansible collection selfheal.remediation, install
from the tarball (no Galaxy server), a team's playbook calling a role by its full name passes
Ansible's syntax check, and one role runs from the collection: runaway_process on this machine,
in check mode with a threshold no process reaches, so it only reads /proc. A syntax check
resolves no module or plugin; the run does, so a role that needs one the collection does not
ship fails here. Its version follows pyproject.toml."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from orchestrator.config import PROJECT_ROOT

pytestmark = pytest.mark.integration
BIN = Path(sys.executable).parent


def test_the_roles_build_install_and_resolve_as_a_collection(tmp_path: Path) -> None:
    galaxy = yaml.safe_load((PROJECT_ROOT / "deploy" / "ansible-collection" / "galaxy.yml")
                            .read_text())
    version = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert galaxy["version"] == version, "bump deploy/ansible-collection/galaxy.yml too"
    built = subprocess.run(["make", "-s", "collection", f"COLLECTION_BUILD={tmp_path / 'b'}",
                            f"COLLECTION_OUT={tmp_path / 'dist'}"], cwd=PROJECT_ROOT,
                           capture_output=True, text=True, timeout=300, check=False)
    assert built.returncode == 0, built.stdout + built.stderr
    tarball = tmp_path / "dist" / f"selfheal-remediation-{version}.tar.gz"
    assert tarball.is_file()
    env = {**os.environ, "ANSIBLE_COLLECTIONS_PATH": str(tmp_path / "collections")}
    installed = subprocess.run([str(BIN / "ansible-galaxy"), "collection", "install",
                                str(tarball), "-p", str(tmp_path / "collections")],
                               capture_output=True, text=True, timeout=300, check=False, env=env)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    roles = sorted(p.name for p in (PROJECT_ROOT / "ansible" / "roles").iterdir())
    playbook = tmp_path / "team.yml"
    playbook.write_text(yaml.safe_dump([{"hosts": "localhost", "gather_facts": False,
                                         "roles": [{"role": f"selfheal.remediation.{r}"}
                                                   for r in roles]}]))
    checked = subprocess.run([str(BIN / "ansible-playbook"), "--syntax-check", str(playbook)],
                             capture_output=True, text=True, timeout=300, check=False,
                             env=env, cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    missing = playbook.with_name("missing.yml")
    missing.write_text(yaml.safe_dump([{"hosts": "localhost", "roles": [
        {"role": "selfheal.remediation.no_such_role"}]}]))
    refused = subprocess.run([str(BIN / "ansible-playbook"), "--syntax-check", str(missing)],
                             capture_output=True, text=True, timeout=300, check=False,
                             env=env, cwd=tmp_path)
    assert refused.returncode != 0  # the check would catch a role the collection lacks
    snapshots = tmp_path / "snapshots"
    run = playbook.with_name("run.yml")
    run.write_text(yaml.safe_dump([{"hosts": "localhost", "connection": "local",
                                    "gather_facts": False, "roles": [{
                                        "role": "selfheal.remediation.runaway_process",
                                        "vars": {"runaway_process_min_cpu_percent": 1000,
                                                 "runaway_process_snapshot_dir": str(snapshots)},
                                    }]}]))
    ran = subprocess.run([str(BIN / "ansible-playbook"), "--check", str(run)],
                         capture_output=True, text=True, timeout=300, check=False,
                         env=env, cwd=tmp_path)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "no process above 1000" in ran.stdout, ran.stdout  # the pick ran and chose nothing
    assert not snapshots.exists()
