"""The executor with real ansible-runner on a local-connection host: unsafe text stays text."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

from orchestrator.config import PROJECT_ROOT, AnsibleSettings
from orchestrator.errors import TargetError
from orchestrator.execute.inventory import load_inventory
from orchestrator.execute.runner import AnsibleExecutor
from orchestrator.models import OutcomeStatus, Plan

pytestmark = pytest.mark.integration

ROLE_MAIN = """
- name: Write the parameter to a file
  ansible.builtin.copy:
    content: "{{ value }}"
    dest: "{{ dest }}"
    mode: "0600"
"""


def write_test_project(tmp_path: Path) -> Path:
    """Our playbooks and ansible.cfg plus a role that writes its parameter to a file."""
    proj = tmp_path / "ansible"
    shutil.copytree(PROJECT_ROOT / "ansible" / "playbooks", proj / "playbooks")
    shutil.copy(PROJECT_ROOT / "ansible" / "ansible.cfg", proj / "ansible.cfg")
    role = proj / "roles" / "write_param" / "tasks"
    role.mkdir(parents=True)
    (role / "main.yml").write_text(ROLE_MAIN)
    (role / "verify.yml").write_text("- ansible.builtin.stat: {path: \"{{ dest }}\"}\n")
    return proj


@pytest.fixture
def project(tmp_path: Path) -> tuple[AnsibleExecutor, Path]:
    proj = write_test_project(tmp_path)
    inv = tmp_path / "hosts.ini"
    inv.write_text(f"localhost ansible_connection=local ansible_python_interpreter={sys.executable}"
                   "\nother ansible_connection=local\n")
    executor = AnsibleExecutor(AnsibleSettings(project_dir=proj), load_inventory(inv),
                               tmp_path / "state" / "runs")
    return executor, tmp_path


def plan(value: str, dest: Path, targets: tuple[str, ...] = ("localhost",)) -> Plan:
    return Plan("test", "write_param", "write_param", targets,
                {"value": value, "dest": str(dest)}, 1, 0, False, "service_up")


def test_template_in_a_parameter_is_never_run(project: tuple[AnsibleExecutor, Path]) -> None:
    executor, tmp = project
    marker = tmp / "pwned"
    hostile = "{{ lookup('pipe', 'touch " + str(marker) + "') }}"
    outcome = executor.run(plan(hostile, tmp / "out.txt"))
    assert outcome.status is OutcomeStatus.SUCCEEDED, outcome.messages
    assert (tmp / "out.txt").read_text() == hostile
    assert not marker.exists()


def test_the_hazard_is_real_without_unsafe(project: tuple[AnsibleExecutor, Path]) -> None:
    """Control: the same value passed as a plain extra var does run the command."""
    import ansible_runner

    executor, tmp = project
    marker = tmp / "pwned"
    hostile = "{{ lookup('pipe', 'touch " + str(marker) + "') }}"
    (tmp / "plain").mkdir()
    bin_dir = str(Path(sys.executable).parent)
    result = ansible_runner.run(private_data_dir=str(tmp / "plain"),
                       project_dir=str(executor.settings.project_dir),
                       playbook=str(executor.settings.project_dir / "playbooks/remediate.yml"),
                       inventory=str(executor.inventory.source), quiet=True, limit="localhost",
                       envvars={"PATH": f"{bin_dir}:{os.environ['PATH']}",
                                "ANSIBLE_CONFIG": str(executor.settings.project_dir /
                                                      "ansible.cfg")},
                       extravars={"selfheal_targets": "localhost", "selfheal_role": "write_param",
                                  "value": hostile, "dest": str(tmp / "plain.txt")})
    assert result.status == "successful", result.stdout.read()
    assert marker.exists()


def test_check_mode_changes_nothing(project: tuple[AnsibleExecutor, Path]) -> None:
    executor, tmp = project
    outcome = executor.run(plan("hello", tmp / "out.txt"), check=True)
    assert outcome.status is OutcomeStatus.SUCCEEDED and outcome.check_mode
    assert not (tmp / "out.txt").exists()


def test_only_the_named_host_is_touched(project: tuple[AnsibleExecutor, Path]) -> None:
    executor, tmp = project
    outcome = executor.run(plan("x", tmp / "one.txt"))
    assert outcome.changed_hosts == ("localhost",)


@pytest.mark.parametrize("targets, message", [((), "empty list"), (("web9",), "unknown host")])
def test_empty_or_unknown_targets_run_nothing(project: tuple[AnsibleExecutor, Path],
                                              targets: tuple[str, ...], message: str) -> None:
    executor, tmp = project
    with pytest.raises(TargetError, match=message):
        executor.run(plan("x", tmp / "never.txt", targets))
    assert not (tmp / "never.txt").exists()
    assert not (tmp / "state" / "runs").exists()


def test_old_run_folders_are_pruned(tmp_path: Path) -> None:
    from orchestrator.execute.runner import prune_runs

    for i in range(5):
        (tmp_path / f"2026112{i}T000000-x-remediate-abc").mkdir()
    prune_runs(tmp_path, 2)
    assert sorted(p.name[:9] for p in tmp_path.iterdir()) == ["20261123T", "20261124T"]


def test_secrets_stay_out_of_artifacts_store_and_logs(tmp_path: Path,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    """An inventory secret never lands in run artefacts, the store or the logs."""
    import logging

    from orchestrator.store.db import Store

    secret = "s3cr3t-Pa55-4711"
    proj = write_test_project(tmp_path)
    inv = tmp_path / "hosts.yml"
    inv.write_text("all:\n  hosts:\n    localhost:\n      ansible_connection: local\n"
                   f"      ansible_python_interpreter: {sys.executable}\n"
                   f"      ansible_become_password: {secret}\n      db_password: {secret}\n")
    runs = tmp_path / "state" / "runs"
    executor = AnsibleExecutor(AnsibleSettings(project_dir=proj), load_inventory(inv), runs)
    (tmp_path / "state").mkdir()
    store = Store(f"sqlite:///{tmp_path / 'state' / 'db.sqlite'}", b"k" * 32)
    caplog.set_level(logging.DEBUG)
    run = store.start_run(None, "localhost", "write_param", "remediate", False, 0.0)
    outcome = executor.run(plan("hello", tmp_path / "out.txt"))
    store.finish_run(run, "localhost", "write_param", "remediate", outcome)
    assert outcome.status is OutcomeStatus.SUCCEEDED
    leaked = [p for p in (tmp_path / "state").rglob("*") if p.is_file()
              and secret.encode() in p.read_bytes()]
    assert leaked == []
    assert secret not in caplog.text
    assert any(runs.rglob("job_events/*.json")), "the check must look at real artefacts"
    # control: a secret that is passed as a parameter does show up, so the scan can fail
    executor.run(plan(secret, tmp_path / "out2.txt"))
    assert any(secret.encode() in p.read_bytes() for p in runs.rglob("*") if p.is_file())
