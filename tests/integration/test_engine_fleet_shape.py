"""Fleets of any shape, against a real Prometheus and store: a web host, a database host and a
plain host, as a team's inventory groups them. Only ansible-runner's ``run`` is replaced (at the
edge) by a fixer that brings the planned unit's series back, reading the unit from the run's own
extra vars, so a fix for the wrong unit would leave the incident unhealed.

A signal a host does not export and is not required to export leaves that host healthy; one its
group requires is unknown when missing; several units of one host are several incidents; a
crash seen both by its scrape and by systemd is one incident; unknown hosts have their own limit.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest

from orchestrator.config import PROJECT_ROOT, AnsibleSettings, NotifySettings, PrometheusSettings
from orchestrator.core.policy import Policy
from orchestrator.engine import Controller
from orchestrator.execute.inventory import load_inventory
from orchestrator.execute.runner import AnsibleExecutor
from orchestrator.models import Health, IncidentState as S
from orchestrator.notify import Notifier
from orchestrator.rules import Rules, load_rules
from orchestrator.sources.prometheus import PrometheusSource, connect
from orchestrator.store.db import Store
from tests.conftest import write_fault_rules
from tests.integration.conftest import Exporter, RealPrometheus
from tests.integration.test_engine_guardrails import FakeResult
from tests.receivers import webhook

KEY = b"k" * 32
pytestmark = pytest.mark.integration
NET = "127.0.16"  # this module's hosts (unused by any other module)
HOSTS = {"web1": 1, "db1": 2, "plain1": 3}
SERIES = 'selfheal_test_service_up{instance=~"127\\\\.0\\\\.16\\\\..*"'

FAULTS = f"""
signals:
  node_up:
    promql: '{SERIES}, unit="node"}}'
    firing_when: "== 0"
  service_up:
    promql: '{SERIES}, unit=~"[a-z]+[.]service"}}'
    firing_when: "== 0"
    applies_to: exporters
    subject: [unit]
  unit_failed:
    promql: 'label_replace({SERIES}, unit=~"state-.+"}}, "unit", "$1", "unit", "state-(.+)")'
    firing_when: "== 1"
    applies_to: exporters
    subject: [unit]
  pg_exporter_up:
    promql: '{SERIES}, unit="pg-exporter"}}'
    firing_when: "== 0"
    applies_to: {{groups: [db]}}
faults:
  service_crash:
    description: test
    when_firing: [service_up]
    when_healthy: [node_up]
    supersedes: [unit_failed]
    remediations: [service_restart]
  unit_failed:
    description: test
    when_firing: [unit_failed]
    when_healthy: [node_up]
    remediations: [unit_restart]
  pg_exporter_down:
    description: test
    when_firing: [pg_exporter_up]
    remediations: []
"""
INVENTORY = f"""
[web]
web1 selfheal_prometheus_host={NET}.1
[db]
db1 selfheal_prometheus_host={NET}.2
[plain]
plain1 selfheal_prometheus_host={NET}.3
"""


class UnitFixer:
    """Stands in for ansible_runner.run: brings back exactly the unit the play was given."""

    def __init__(self, exporter: Exporter) -> None:
        self.exporter = exporter
        self.calls: list[tuple[str, str]] = []

    def __call__(self, **kwargs: Any) -> FakeResult:
        host = kwargs["limit"]
        extravars = (Path(kwargs["private_data_dir"]) / "env" / "extravars").read_text()
        unit = re.search(r'^unit: !unsafe "([^"]+)"', extravars, re.M)
        assert unit is not None, extravars
        self.calls.append((host, unit.group(1)))
        instance = f"{NET}.{HOSTS[host]}"
        self.exporter.gauge.labels(f"{instance}:8080", unit.group(1)).set(1)
        self.exporter.gauge.labels(f"{instance}:9100", f"state-{unit.group(1)}").set(0)
        return FakeResult("successful", 0, {"ok": {host: 1}, "changed": {host: 1}})


def publish(exporter: Exporter, prometheus: RealPrometheus, series: dict[tuple[str, str], float]
            ) -> None:
    """Set exactly these (instance, unit) series of this module's hosts; remove all others."""
    gauge = exporter.gauge
    for labels in list(gauge._metrics):
        if labels[0].startswith(f"{NET}."):
            gauge.remove(*labels)
    for (instance, unit), value in series.items():
        gauge.labels(instance, unit).set(value)
    expected = len(series)
    prometheus.wait_for(f"count({SERIES}}}) == {expected}")
    for (instance, unit), value in series.items():
        prometheus.wait_for(f'{SERIES}, instance="{instance}", unit="{unit}"}} == {value}')


def healthy_fleet() -> dict[tuple[str, str], float]:
    """Every host's node_exporter; web1 runs app + nginx, db1 postgresql + its exporter."""
    series = {(f"{NET}.{n}:9100", "node"): 1.0 for n in HOSTS.values()}
    for unit in ("app.service", "nginx.service"):
        series[(f"{NET}.1:8080", unit)] = 1.0
        series[(f"{NET}.1:9100", f"state-{unit}")] = 0.0
    series[(f"{NET}.2:8080", "postgresql.service")] = 1.0
    series[(f"{NET}.2:9187", "pg-exporter")] = 1.0
    return series


def build(tmp_path: Path, prometheus: RealPrometheus, exporter: Exporter,
          policy: dict[str, Any] | None = None) -> tuple[Controller, UnitFixer]:
    rules_dir = tmp_path / "rules"
    rules_dir.mkdir()
    (rules_dir / "remediations.yml").write_text(
        (PROJECT_ROOT / "rules" / "remediations.yml").read_text())
    (rules_dir / "policy.yml").write_text("mode: strict\n")
    write_fault_rules(rules_dir, FAULTS)
    rules = load_rules(rules_dir, PROJECT_ROOT / "ansible" / "roles")
    rules = Rules(rules.catalog, rules.faults, Policy.model_validate(
        {"restart_units": ["app.service", "nginx.service", "postgresql*"], **(policy or {})}))
    (tmp_path / "hosts.ini").write_text(INVENTORY)
    inventory = load_inventory(tmp_path / "hosts.ini")
    fixer = UnitFixer(exporter)
    settings = PrometheusSettings(url=prometheus.url)  # type: ignore[call-arg]
    controller = Controller(
        rules=rules, inventory=inventory,
        source=PrometheusSource(connect(settings), settings),
        executor=AnsibleExecutor(AnsibleSettings(), inventory, tmp_path / "runs", run_fn=fixer),
        store=Store(f"sqlite:///{tmp_path / 'state.db'}", KEY), verify_poll_s=0.2)
    return controller, fixer


def settle(controller: Controller, done: set[str], sweeps: int = 20) -> dict[str, str]:
    """Sweep until every incident is in one of ``done``; incident key -> state."""
    for _ in range(sweeps):
        controller.sweep()
        found = {f"{i.host}/{i.fault}/{i.subject}": i.state.value
                 for i in controller.store.incidents()}
        if found and set(found.values()) <= done:
            return found
        time.sleep(0.3)
    return found


def test_a_plain_host_without_the_service_signal_is_healthy_while_a_crash_heals(
        tmp_path: Path, prometheus: RealPrometheus, exporter: Exporter) -> None:
    controller, fixer = build(tmp_path, prometheus, exporter)
    series = healthy_fleet()
    series[(f"{NET}.1:8080", "app.service")] = 0.0
    publish(exporter, prometheus, series)
    report = controller.sweep()
    health = {v.host: v.health for v in report.verdicts}
    assert health == {"web1": Health.FIRING, "db1": Health.HEALTHY, "plain1": Health.HEALTHY}
    assert len(report.actions) == 1, [(a.verdict, a.reasons) for a in report.actions]
    (action,) = report.actions
    assert action.state == S.RESOLVED, action
    assert fixer.calls == [("web1", "app.service")]
    incident = controller.store.get(action.incident_id or 0)
    assert incident is not None and incident.subject == "unit=app.service"


def test_a_host_missing_a_signal_its_group_requires_is_unknown_the_others_are_not(
        tmp_path: Path, prometheus: RealPrometheus, exporter: Exporter) -> None:
    controller, fixer = build(tmp_path, prometheus, exporter)
    series = healthy_fleet()
    del series[(f"{NET}.2:9187", "pg-exporter")]  # the db host's exporter is gone
    series[(f"{NET}.1:8080", "nginx.service")] = 0.0
    publish(exporter, prometheus, series)
    report = controller.sweep()
    health = {v.host: v.health for v in report.verdicts}
    assert health == {"web1": Health.FIRING, "db1": Health.UNKNOWN, "plain1": Health.HEALTHY}
    db = next(v for v in report.verdicts if v.host == "db1")
    assert any("pg_exporter_up" in note for note in db.notes)
    (action,) = report.actions  # 1 broken + 1 unknown of 3: each under its own limit
    assert action.state == S.RESOLVED and fixer.calls == [("web1", "nginx.service")]


def test_two_units_down_on_one_host_are_two_incidents_both_healed(
        tmp_path: Path, prometheus: RealPrometheus, exporter: Exporter) -> None:
    controller, fixer = build(tmp_path, prometheus, exporter)
    series = healthy_fleet()
    series[(f"{NET}.1:8080", "app.service")] = 0.0
    series[(f"{NET}.1:8080", "nginx.service")] = 0.0
    publish(exporter, prometheus, series)
    found = settle(controller, {"resolved"})
    assert found == {"web1/service_crash/unit=app.service": "resolved",
                     "web1/service_crash/unit=nginx.service": "resolved"}
    assert sorted(fixer.calls) == [("web1", "app.service"), ("web1", "nginx.service")]


def test_a_crash_seen_by_its_scrape_and_by_systemd_is_one_incident(
        tmp_path: Path, prometheus: RealPrometheus, exporter: Exporter) -> None:
    controller, fixer = build(tmp_path, prometheus, exporter)
    series = healthy_fleet()
    series[(f"{NET}.1:8080", "app.service")] = 0.0
    series[(f"{NET}.1:9100", "state-app.service")] = 1.0
    publish(exporter, prometheus, series)
    found = settle(controller, {"resolved"})
    assert found == {"web1/service_crash/unit=app.service": "resolved"}
    assert fixer.calls == [("web1", "app.service")]


def test_a_failed_unit_is_restarted_only_when_the_allow_list_says_so(
        tmp_path: Path, prometheus: RealPrometheus, exporter: Exporter) -> None:
    # two of three hosts fire here; the broken-fleet limit is not what this test is about
    controller, fixer = build(tmp_path, prometheus, exporter,
                              {"blast_radius": {"max_broken_fraction": 1}})
    series = healthy_fleet()
    series[(f"{NET}.2:9100", "state-postgresql@15-main.service")] = 1.0  # allowed, no endpoint
    series[(f"{NET}.3:9100", "state-cron.service")] = 1.0  # not on the allow-list
    publish(exporter, prometheus, series)
    with webhook() as hook:
        controller.notify = Notifier.from_settings(
            NotifySettings(urls=[f"json://127.0.0.1:{hook.port}/"])  # type: ignore[list-item]
        ).incident_changed
        found = settle(controller, {"resolved", "escalated"})
    assert found == {"db1/unit_failed/unit=postgresql@15-main.service": "resolved",
                     "plain1/unit_failed/unit=cron.service": "escalated"}
    assert fixer.calls == [("db1", "postgresql@15-main.service")]
    # the one page is for the unit a human must see to, and names it; the healed one is silent
    assert [p["title"] for p in hook.received] == [
        "selfheal: unit_failed (unit=cron.service) on plain1 is escalated"], hook.received
    cron = next(i for i in controller.store.incidents() if i.host == "plain1")
    transitions = controller.store.transitions(cron.id)
    assert any("restart_units" in t["note"] for t in transitions), transitions


def test_unknown_hosts_over_their_own_limit_hold_every_fix(
        tmp_path: Path, prometheus: RealPrometheus, exporter: Exporter) -> None:
    controller, fixer = build(tmp_path, prometheus, exporter,
                              {"blast_radius": {"max_unknown_fraction": 0.3}})
    series = healthy_fleet()
    del series[(f"{NET}.3:9100", "node")]  # plain1 unseen: every host must export node_up
    series[(f"{NET}.1:8080", "app.service")] = 0.0
    publish(exporter, prometheus, series)
    (action,) = controller.sweep().actions
    assert action.state == S.HELD and "1 of 3 hosts are unknown" in action.reasons[0]
    assert fixer.calls == []


def test_the_sweep_output_names_each_subject_in_json_and_tables(
        tmp_path: Path, prometheus: RealPrometheus, exporter: Exporter) -> None:
    """The paths an operator reads (``sweep --json``, the fleet and actions tables), with a real
    incident per unit on a mixed fleet: which unit is named, and the plain host is healthy."""
    import json

    from rich.console import Console

    from orchestrator.cli.common import to_jsonable
    from orchestrator.cli.report import actions_table, hosts_table, sweep_json

    controller, _ = build(tmp_path, prometheus, exporter)
    series = healthy_fleet()
    series[(f"{NET}.1:8080", "nginx.service")] = 0.0
    publish(exporter, prometheus, series)
    report = controller.sweep()
    shown = json.loads(json.dumps(to_jsonable(sweep_json(report)), allow_nan=False))
    (action,) = shown["actions"]
    assert (action["host"], action["subject"], action["state"]) == (
        "web1", "unit=nginx.service", "resolved")
    web = next(h for h in shown["hosts"] if h["host"] == "web1")
    assert [d["subject"] for d in web["diagnoses"]] == ["unit=nginx.service"]
    assert {h["host"]: h["health"] for h in shown["hosts"]}["plain1"] == "healthy"
    console = Console(record=True, width=200)
    console.print(hosts_table(report))
    console.print(actions_table(report))
    text = console.export_text()
    assert "service_crash (unit=nginx.service)" in text
    assert "plain1" in text and "healthy" in text
