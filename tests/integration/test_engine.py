"""The sweep against a real Prometheus and real ansible-runner, without the lab.

Hosts are local-connection inventory entries mapped to exporter series, so the refusals and the
restart-resume logic are exercised with real parts and no SSH.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from orchestrator.config import PROJECT_ROOT, AnsibleSettings, PrometheusSettings
from orchestrator.core.lifecycle import advance
from orchestrator.engine import Controller
from orchestrator.execute.inventory import load_inventory
from orchestrator.execute.runner import AnsibleExecutor
from orchestrator.models import IncidentState as S
from orchestrator.rules import load_rules
from orchestrator.sources.prometheus import PrometheusSource, connect
from orchestrator.store.db import Store
from tests.conftest import write_fault_rules
from tests.integration.conftest import Exporter, RealPrometheus, free_port

KEY = b"k" * 32
pytestmark = pytest.mark.integration

FAULTS = """
signals:
  node_up: {promql: 'selfheal_test_service_up{unit="node"}', firing_when: "== 0"}
  service_up: {promql: 'selfheal_test_service_up{unit!="node"}', firing_when: "== 0"}
faults:
  service_crash:
    description: test
    when_firing: [service_up]
    when_healthy: [node_up]
    remediations: [service_restart]
"""


@pytest.fixture
def world(tmp_path: Path, prometheus: RealPrometheus, exporter: Exporter) -> Controller:
    rules_dir = tmp_path / "rules"
    rules_dir.mkdir()
    for name in ("remediations.yml", "policy.yml"):
        (rules_dir / name).write_text((PROJECT_ROOT / "rules" / name).read_text())
    write_fault_rules(rules_dir, FAULTS)
    rules = load_rules(rules_dir, PROJECT_ROOT / "ansible" / "roles")
    inv_path = tmp_path / "hosts.ini"
    inv_path.write_text("\n".join(
        f"h{i} ansible_connection=local selfheal_prometheus_host=127.0.2.{i}" for i in (1, 2, 3)))
    inventory = load_inventory(inv_path)
    settings = PrometheusSettings(url=prometheus.url)  # type: ignore[call-arg]
    return Controller(rules=rules, inventory=inventory,
                      source=PrometheusSource(connect(settings), settings),
                      executor=AnsibleExecutor(AnsibleSettings(), inventory, tmp_path / "runs"),
                      store=Store(f"sqlite:///{tmp_path / 'state.db'}", KEY))


def publish(exporter: Exporter, prometheus: RealPrometheus, host: int, unit: str,
            value: float) -> None:
    for i in (1, 2, 3):
        exporter.gauge.labels(f"127.0.2.{i}:9100", "node").set(1)
        if i != host:
            exporter.gauge.labels(f"127.0.2.{i}:8080", "ok.service").set(1)
    exporter.gauge.labels(f"127.0.2.{host}:8080", unit).set(value)
    # this host's series, not any series of the unit: another test's host may still show the
    # value in Prometheus while its own change waits for the next scrape (one scrape carries all)
    prometheus.wait_for(f'selfheal_test_service_up{{instance="127.0.2.{host}:8080",'
                        f'unit="{unit}"}} == {value:g}')


def test_hostile_label_is_refused_and_nothing_runs(world: Controller, exporter: Exporter,
                                                   prometheus: RealPrometheus) -> None:
    hostile = "x.service; reboot"
    publish(exporter, prometheus, 2, hostile, 0)
    try:
        report = world.sweep()
        (action,) = report.actions
        assert action.host == "h2" and action.state == S.ESCALATED
        assert "refused parameter 'service_restart_unit'" in action.reasons[0]
        assert world.store.history(0) == []
        assert not (Path(world.executor.runs_dir)).exists()
        assert report.exit_code == 1
    finally:
        exporter.gauge.remove("127.0.2.2:8080", hostile)


def test_incident_left_mid_run_is_not_run_twice(world: Controller, exporter: Exporter,
                                                prometheus: RealPrometheus) -> None:
    """A controller died while remediating; the next one re-verifies instead of acting again."""
    publish(exporter, prometheus, 3, "crashy.service", 0)
    try:
        incident = world.store.open_incident("h3", "service_crash", time.time())
        for state in (S.DIAGNOSED, S.PLANNED, S.REMEDIATING):
            incident = world.store.save_transition(incident, advance(incident, state,
                                                                     time.time()))
        report = world.sweep()
        after = world.store.get(incident.id)
        assert after is not None and after.state is S.ESCALATED
        assert "not acting twice" in world.store.transitions(incident.id)[-1]["note"]
        assert world.store.history(0) == []
        assert [a.verdict for a in report.actions] == ["open"]
    finally:
        exporter.gauge.remove("127.0.2.3:8080", "crashy.service")


def test_cli_with_prometheus_down_reports_unknown(tmp_path: Path) -> None:
    inv = tmp_path / "hosts.ini"
    inv.write_text("web1 ansible_host=127.0.0.1\n")
    config = tmp_path / "selfheal.yml"
    config.write_text(f"prometheus: {{url: 'http://127.0.0.1:{free_port()}', timeout_s: 1}}\n"
                      f"inventory: {{path: hosts.ini}}\nstate: {{dir: state}}\n")
    done = subprocess.run([sys.executable, "-m", "orchestrator", "--config", str(config),
                           "sweep", "--json"], capture_output=True, text=True, timeout=60,
                          env={**os.environ}, check=False)
    assert done.returncode == 1, done.stderr
    report = json.loads(done.stdout)
    assert "did not answer" in report["source_error"]
    assert report["hosts"] == [{"host": "web1", "health": "unknown", "diagnoses": [],
                                "notes": [report["hosts"][0]["notes"][0]]}]
    assert report["actions"] == []


def test_cli_bad_rules_exit_2_naming_file_and_line(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    for name in ("signals.yml", "faults.yml", "policy.yml"):
        (rules / name).write_text((PROJECT_ROOT / "rules" / name).read_text())
    (rules / "remediations.yml").write_text("remediations:\n  x:\n    role: service_restart\n")
    inv = tmp_path / "hosts.ini"
    inv.write_text("web1\n")
    config = tmp_path / "selfheal.yml"
    config.write_text("inventory: {path: hosts.ini}\nrules: {dir: rules}\nstate: {dir: state}\n")
    done = subprocess.run([sys.executable, "-m", "orchestrator", "--config", str(config),
                           "sweep"], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2
    assert "remediations.yml:3" in done.stderr and "add this key" in done.stderr


def test_cli_unknown_host_exit_2_names_known_hosts(tmp_path: Path) -> None:
    inv = tmp_path / "hosts.ini"
    inv.write_text("web1\nweb2\n")
    config = tmp_path / "selfheal.yml"
    config.write_text("inventory: {path: hosts.ini}\nstate: {dir: state}\n")
    for args in (["diagnose", "web9"], ["remediate", "web9", "service_restart"]):
        done = subprocess.run([sys.executable, "-m", "orchestrator", "--config", str(config),
                               *args, "--json"], capture_output=True, text=True, timeout=60,
                              check=False)
        assert done.returncode == 2, done.stderr
        error = json.loads(done.stdout)
        assert error["error"] == "TargetError"
        assert "web9" in error["message"] and "web1" in error["message"]
