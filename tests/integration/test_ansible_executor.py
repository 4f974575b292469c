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
from orchestrator.execute.runner import AnsibleExecutor, run_group_source
from orchestrator.models import OutcomeStatus, Plan

pytestmark = pytest.mark.integration

ROLE_MAIN = """
- name: Write the parameter to a file
  ansible.builtin.copy:
    content: "{{ value }}"
    dest: "{{ dest }}"
    mode: "0600"
"""


MARK_HOST = """
- name: Leave a file named after the host, so a test sees which hosts the play ran on
  ansible.builtin.copy:
    content: "{{ inventory_hostname }}"
    dest: "{{ dest }}/{{ inventory_hostname | replace('*', 'STAR') }}"
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
    marks = proj / "roles" / "mark_host" / "tasks"
    marks.mkdir(parents=True)
    for step in ("main", "verify", "rollback"):
        (marks / f"{step}.yml").write_text(MARK_HOST)
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
    group = tmp / "plain" / "targets.yml"
    group.write_text(run_group_source(("localhost",)))
    bin_dir = str(Path(sys.executable).parent)
    result = ansible_runner.run(private_data_dir=str(tmp / "plain"),
                       project_dir=str(executor.settings.project_dir),
                       playbook=str(executor.settings.project_dir / "playbooks/remediate.yml"),
                       inventory=[str(executor.inventory.source), str(group)], quiet=True,
                       limit="localhost",
                       envvars={"PATH": f"{bin_dir}:{os.environ['PATH']}",
                                "ANSIBLE_CONFIG": str(executor.settings.project_dir /
                                                      "ansible.cfg")},
                       extravars={"selfheal_role": "write_param",
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


# Host `db` shares its name with its group; `db*` and `~db` are Ansible patterns that would match
# the whole group. All run locally, each leaving a file named after itself.
GROUP_NAMED_HOSTS = """
all:
  vars:
    ansible_connection: local
    ansible_python_interpreter: {python}
  children:
    db:
      hosts:
        db: {{}}
        db2: {{}}
        db3: {{}}
    web:
      hosts:
        web1: {{}}
        "db*": {{}}
        "~db": {{}}
"""


@pytest.fixture
def group_named(tmp_path: Path) -> tuple[AnsibleExecutor, Path]:
    proj = write_test_project(tmp_path)
    inv = tmp_path / "hosts.yml"
    inv.write_text(GROUP_NAMED_HOSTS.format(python=sys.executable))
    (tmp_path / "marks").mkdir()
    return AnsibleExecutor(AnsibleSettings(project_dir=proj), load_inventory(inv),
                           tmp_path / "state" / "runs"), tmp_path


def mark_plan(tmp: Path, *targets: str) -> Plan:
    return Plan("test", "mark_host", "mark_host", targets, {"dest": str(tmp / "marks")}, 1, 0,
                False, "service_up")


def marked(tmp: Path) -> set[str]:
    return {p.name for p in (tmp / "marks").iterdir()}


def test_pattern_named_hosts_are_refused_at_load(group_named: tuple[AnsibleExecutor, Path]) -> None:
    executor, _ = group_named
    assert "db*" not in executor.inventory.hosts and "~db" not in executor.inventory.hosts
    assert any("'db*'" in r and "host pattern" in r for r in executor.inventory.refused)


@pytest.mark.parametrize("phase", ["remediate", "verify", "rollback"])
def test_a_host_named_like_its_group_is_healed_alone(group_named: tuple[AnsibleExecutor, Path],
                                                      phase: str) -> None:
    executor, tmp = group_named
    outcome = executor.run(mark_plan(tmp, "db"), phase)  # type: ignore[arg-type]
    assert outcome.status is OutcomeStatus.SUCCEEDED, outcome.messages
    assert marked(tmp) == {"db"}
    assert outcome.extra_hosts == ()


def test_two_targets_run_on_exactly_those(group_named: tuple[AnsibleExecutor, Path]) -> None:
    executor, tmp = group_named
    outcome = executor.run(mark_plan(tmp, "web1", "db"))
    assert outcome.status is OutcomeStatus.SUCCEEDED, outcome.messages
    assert marked(tmp) == {"db", "web1"}


def test_a_host_gone_from_the_inventory_is_refused_before_running(
        group_named: tuple[AnsibleExecutor, Path]) -> None:
    """The inventory changes after selfheal read it: `db` is now only a group. Passing the name
    to Ansible as a pattern would run on the whole group; the check before the run refuses."""
    executor, tmp = group_named
    inv = tmp / "hosts.yml"
    inv.write_text(inv.read_text().replace("        db: {}\n", ""))
    with pytest.raises(TargetError, match=r"Ansible would run on \[\] for a plan on \['db'\]"):
        executor.run(mark_plan(tmp, "db"))
    assert marked(tmp) == set()


def test_a_team_group_named_like_selfheals_cannot_widen_a_run(
        group_named: tuple[AnsibleExecutor, Path]) -> None:
    """Such an inventory is refused at load; should it appear later, --limit still holds."""
    executor, tmp = group_named
    inv = tmp / "hosts.yml"
    inv.write_text(inv.read_text() + "    selfheal_targets:\n      hosts:\n        db2: {}\n")
    outcome = executor.run(mark_plan(tmp, "db"))
    assert outcome.status is OutcomeStatus.SUCCEEDED, outcome.messages
    assert marked(tmp) == {"db"}


def test_a_run_that_touched_more_hosts_is_widened(
        group_named: tuple[AnsibleExecutor, Path]) -> None:
    """Should Ansible select more than was checked (here: its run source rewritten between the
    check and the play), the outcome names the extra hosts and is never a success."""
    import ansible_runner

    executor, tmp = group_named

    def widening_run(**kwargs: object) -> object:
        group_source = Path(str(kwargs["inventory"][1]))  # type: ignore[index]
        group_source.write_text(run_group_source(("db", "db2")))
        kwargs["limit"] = "db,db2"
        return ansible_runner.run(**kwargs)

    executor.run_fn = widening_run
    outcome = executor.run(mark_plan(tmp, "db"))
    assert marked(tmp) == {"db", "db2"}  # the control: the run really went wider
    assert outcome.status is OutcomeStatus.WIDENED
    assert outcome.extra_hosts == ("db2",)
    assert any("db2" in m and "did not name" in m for m in outcome.messages)
