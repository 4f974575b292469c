"""What every printing command shows, as JSON and as tables, with real records in it.

A real Prometheus holds a broken service on one host and a detector threshold crossed on it, so
the sweep produces a real diagnosis, a real escalated incident (the fault has no catalog entry,
so no Ansible runs), a real detector finding in ``report.anomalies`` and real audit records. Each
command runs through the real root app (``selfheal --config FILE ...``) with typer's CliRunner.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from orchestrator.cli.app import app
from orchestrator.config import PROJECT_ROOT
from tests.conftest import write_detection_rules, write_fault_rules
from tests.integration.conftest import Exporter, RealPrometheus

pytestmark = pytest.mark.integration
runner = CliRunner()

FAULTS = """
signals:
  service_up: {promql: 'selfheal_test_service_up{unit="out-svc"}', firing_when: "== 0"}
  unit_failed:
    promql: 'selfheal_test_service_up{unit=~"selfheal-absent-.+[.]service"}'
    firing_when: "== 0"
    applies_to: exporters  # only the diagnose test publishes it
    subject: [unit]
faults:
  out_crash:
    description: the output test's service is down; nothing in the catalog fixes it
    when_firing: [service_up]
  out_unit_failed:
    description: a unit the policy may restart has failed
    when_firing: [unit_failed]
    remediations: [unit_restart]
"""
DETECTION = """
signals:
  out_load:
    promql: sum by (instance) (selfheal_test_service_up{unit="out-load"})
    harmful: up
    threshold: "> 0.9"
"""


@dataclass
class World:
    config: Path

    def run(self, *args: str) -> Any:
        return runner.invoke(app, ["--config", str(self.config), *args])

    def json(self, *args: str, code: int | None = None) -> Any:
        done = self.run(*args, "--json")
        if code is not None:
            assert done.exit_code == code, done.output
        return json.loads(done.stdout)


@pytest.fixture
def world(tmp_path: Path, prometheus: RealPrometheus, exporter: Exporter) -> Iterator[World]:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "remediations.yml").write_text((PROJECT_ROOT / "rules/remediations.yml").read_text())
    policy = (PROJECT_ROOT / "rules" / "policy.yml").read_text()
    (rules / "policy.yml").write_text(policy.replace("restart_units:\n",
                                                     "restart_units:\n  - selfheal-absent.*\n"))
    write_fault_rules(rules, FAULTS)
    write_detection_rules(rules, DETECTION)
    (tmp_path / "hosts.ini").write_text(
        "o1 ansible_connection=local selfheal_prometheus_host=127.0.41.1\n"
        "o2 ansible_connection=local selfheal_prometheus_host=127.0.41.2\n")
    config = tmp_path / "selfheal.yml"
    config.write_text(f"prometheus: {{url: '{prometheus.url}'}}\n"
                      "inventory: {path: hosts.ini}\nrules: {dir: rules}\nstate: {dir: state}\n")
    g = exporter.gauge
    g.labels("127.0.41.1:8080", "out-svc").set(0)  # o1's service is down
    g.labels("127.0.41.2:8080", "out-svc").set(1)
    g.labels("127.0.41.1:9100", "out-load").set(0.97)  # o1 crosses the detector threshold
    g.labels("127.0.41.2:9100", "out-load").set(0.2)
    for ready in ('{unit="out-svc",instance="127.0.41.1:8080"} == 0',
                  '{unit="out-load",instance="127.0.41.1:9100"} > 0.9',
                  '{unit="out-load",instance="127.0.41.2:9100"}'):
        prometheus.wait_for(f"selfheal_test_service_up{ready}")
    yield World(config)


def test_sweep_json_with_a_diagnosis_an_incident_and_a_detector_finding(world: World) -> None:
    report = world.json("sweep", code=1)  # escalated: needs a human
    hosts = {h["host"]: h for h in report["hosts"]}
    assert hosts["o1"]["health"] == "firing" and hosts["o2"]["health"] == "healthy"
    (diagnosis,) = hosts["o1"]["diagnoses"]
    assert diagnosis["fault"] == "out_crash"
    assert diagnosis["labels"]["instance"] == "127.0.41.1:8080"
    (action,) = report["actions"]
    assert action["state"] == "escalated" and action["incident_id"] == 1
    (finding,) = report["anomalies"]["findings"]
    assert finding["host"] == "o1" and finding["signal"] == "out_load"
    assert finding["health"] == "firing" and finding["labels"] == {}
    assert report["anomalies"]["fallback"] is True


def test_sweep_table_shows_the_host_the_action_and_the_anomaly(world: World) -> None:
    done = world.run("sweep")
    assert done.exit_code == 1, done.output
    out = done.stdout
    assert "o1" in out and "firing" in out and "out_crash" in out and "escalated" in out
    assert "anomalies" in out and "out_load" in out and "detect:thresholds" in out


def test_diagnose_json_and_table(world: World) -> None:
    shown = world.json("diagnose", "o1", code=1)
    assert shown["health"] == "firing"
    assert shown["diagnoses"][0]["fault"] == "out_crash"
    assert shown["plans"] == [{"fault": "out_crash", "subject": "", "remediation": None,
                               "verdict": "refuse", "reasons": ["no catalog remediation"]}]
    (anomaly,) = shown["anomalies"]
    assert anomaly["signal"] == "out_load" and anomaly["labels"] == {}
    table = world.run("diagnose", "o1")
    assert table.exit_code == 1, table.output
    assert "fault out_crash" in table.stdout and "anomaly out_load" in table.stdout


def test_diagnose_names_the_subject_of_each_plan(
        world: World, exporter: Exporter, prometheus: RealPrometheus) -> None:
    """Two units failed on one host: two diagnoses, two plans, each naming its unit."""
    units = ("selfheal-absent-a.service", "selfheal-absent-b.service")
    for unit in units:
        exporter.gauge.labels("127.0.41.2:9100", unit).set(0)
    try:
        for unit in units:
            prometheus.wait_for(f'selfheal_test_service_up{{unit="{unit}"}} == 0')
        shown = world.json("diagnose", "o2", code=1)
        plans = {p["subject"]: p for p in shown["plans"]}
        assert set(plans) == {f"unit={u}" for u in units}, shown["plans"]
        for unit in units:
            plan = plans[f"unit={unit}"]
            assert (plan["fault"], plan["remediation"]) == ("out_unit_failed", "unit_restart")
            assert plan["params"]["unit"] == unit
        table = world.run("diagnose", "o2")
        assert f"out_unit_failed (unit={units[1]})" in table.stdout, table.stdout
        assert f"would run: unit_restart (unit={units[0]})" in table.stdout, table.stdout
    finally:
        for unit in units:
            exporter.gauge.remove("127.0.41.2:9100", unit)


def test_incidents_list_show_and_audit_log_after_a_sweep(world: World) -> None:
    world.json("sweep", code=1)
    listed = world.json("incidents", "list", code=0)
    (incident,) = listed["incidents"]
    assert incident["host"] == "o1" and incident["state"] == "escalated"
    assert incident["detail"]["evidence"]
    shown = world.json("incidents", "show", str(incident["id"]), code=0)
    assert shown["incident"]["fault"] == "out_crash"
    assert [t["to"] for t in shown["transitions"]] == ["detected", "diagnosed", "escalated"]
    audit = world.json("audit", "log", code=0)
    actions = [r["action"] for r in audit["records"]]
    assert "incident.escalated" in actions
    assert all(isinstance(r["payload"], dict) for r in audit["records"])
    for args, words in ((("incidents", "list"), ("out_crash", "escalated")),
                        (("incidents", "show", "1"), ("incident 1", "diagnosed")),
                        (("audit", "log"), ("incident.escalated", "o1/out_crash"))):
        table = world.run(*args)
        assert table.exit_code == 0, table.output
        assert all(w in table.stdout for w in words), table.stdout


def test_remediate_check_json_and_table(world: World) -> None:
    """A check-mode run on a local host: the plan and its Outcome print as JSON and as text."""
    args = ("remediate", "o2", "service_restart", "-p", "unit=selfheal-absent.service",
            "-p", "instance=127.0.41.2:8080", "--check", "--by", "tester")
    shown = world.json(*args)
    assert shown["by"] == "tester" and shown["params"]["unit"] == "selfheal-absent.service"
    outcome = shown["outcome"]
    assert outcome is not None, shown
    assert outcome["check_mode"] is True
    assert outcome["status"] in ("succeeded", "failed")
    assert isinstance(outcome["messages"], list)
    table = world.run(*args)
    assert "service_restart on o2:" in table.stdout
