"""The engine against a second hostile review (defects found in the first review's fixes).

Real Prometheus, real SQLite store; only ansible-runner's ``run`` is replaced at the edge by
``Fixer`` (see test_engine_guardrails).
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import pytest

from orchestrator.config import (
    PROJECT_ROOT,
    PrometheusSettings,
    RulesSettings,
    Settings,
    StateSettings,
)
from orchestrator.core.lifecycle import advance
from orchestrator.detection import STATE_FILE, AnomalyWatch
from orchestrator.models import IncidentState as S
from orchestrator.rules import Rules, load_rules
from orchestrator.sources.prometheus import connect
from tests.conftest import write_detection_rules, write_fault_rules
from tests.integration.conftest import Exporter, RealPrometheus
from tests.integration.test_engine_guardrails import build, crash

pytestmark = pytest.mark.integration
NET = "127.0.11"  # this module's hosts

TWO_FAULTS = """
signals:
  node_up: {promql: 'selfheal_test_service_up{unit="node"}', firing_when: "== 0"}
  service_up: {promql: 'selfheal_test_service_up{unit="app.service"}', firing_when: "== 0"}
  other_up: {promql: 'selfheal_test_service_up{unit="other.service"}', firing_when: "== 0"}
faults:
  service_crash:
    description: test
    when_firing: [service_up]
    when_healthy: [node_up]
    remediations: [service_restart]
  other_crash:
    description: another service on the same host
    when_firing: [other_up]
    when_healthy: [node_up]
    remediations: [service_restart]
"""


def test_an_incident_left_mid_run_ends_when_its_host_leaves(
        tmp_path: Path, prometheus: RealPrometheus, exporter: Exporter) -> None:
    """A controller died while remediating h1 (the lock says nobody else runs now), and h1 is
    then decommissioned: no run will ever end the incident, so the sweep escalates and ends it
    instead of keeping it remediating (active, in the health textfile's counts) for good."""
    controller, fixer = build(tmp_path, prometheus, exporter,
                              {"blast_radius": {"max_broken_fraction": 1}}, net=NET)
    crash(exporter, prometheus, 1, net=NET)
    store = controller.store
    incident = store.open_incident("h1", "service_crash", time.time())
    for state in (S.DIAGNOSED, S.PLANNED, S.REMEDIATING):  # then the controller died
        incident = store.save_transition(incident, advance(incident, state, time.time()))
    hosts = {k: v for k, v in controller.inventory.hosts.items() if k != "h1"}
    controller.inventory = replace(controller.inventory, hosts=hosts)
    crash(exporter, prometheus, net=NET)
    for _ in range(2):
        controller.sweep()
    assert fixer.calls == []
    assert store.incident_counts() == {}, store.incident_counts()


def test_retry_says_unknown_when_the_faults_own_signal_is_unknown(
        tmp_path: Path, prometheus: RealPrometheus, exporter: Exporter) -> None:
    """h1's service_crash is escalated; then its series vanishes (exporter gone: unknown) while
    another fault fires on h1. Retry judges by the fault's own signals, not by the host's
    overall health (FIRING because of the other fault): it says unknown and needs a human."""
    controller, fixer = build(tmp_path, prometheus, exporter,
                              {"blast_radius": {"max_broken_fraction": 1}}, net=NET)
    rules_dir = tmp_path / "rules"
    write_fault_rules(rules_dir, TWO_FAULTS)
    loaded = load_rules(rules_dir, PROJECT_ROOT / "ansible" / "roles")
    controller.rules = Rules(loaded.catalog, loaded.faults, controller.rules.policy)
    fixer.explode_on = {"h1"}
    crash(exporter, prometheus, 1, net=NET)
    for i in (1, 2, 3):
        exporter.gauge.labels(f"{NET}.{i}:8081", "other.service").set(1)
    prometheus.wait_for(f'count(selfheal_test_service_up{{unit="other.service",'
                        f'instance=~"{NET}.*"}}) == 3')  # else h2, h3 are unknown for other_up
    try:
        (failed,) = controller.sweep().actions
        assert failed.state == S.ESCALATED
        exporter.gauge.remove(f"{NET}.1:8080", "app.service")  # h1's app: no data now
        exporter.gauge.labels(f"{NET}.1:8081", "other.service").set(0)  # another fault fires
        prometheus.wait_for(f'absent(selfheal_test_service_up{{instance="{NET}.1:8080",'
                            f'unit="app.service"}})')
        prometheus.wait_for(f'selfheal_test_service_up{{instance="{NET}.1:8081"}} == 0')
        action = controller.retry(failed.incident_id or 0, "bob")
        assert action.verdict == "unknown" and action.needs_human, action
    finally:
        for i in (1, 2, 3):
            exporter.gauge.remove(f"{NET}.{i}:8081", "other.service")
        exporter.gauge.labels(f"{NET}.1:8080", "app.service").set(1)


DETECTION_YML = """
signals:
  r2_cpu:
    promql: sum by (instance) (selfheal_test_service_up{unit="r2-cpu"})
    harmful: up
    threshold: "> 0.9"
"""


def test_a_dry_run_leaves_the_detection_state_alone(
        tmp_path: Path, prometheus: RealPrometheus, exporter: Exporter) -> None:
    """``sweep(dry_run=True)`` changes nothing and takes no lock, so it must not save the
    streaming detectors' state or de-duplication memory either: the service's next sweep (in
    another process, writing the same file) would see the finding as already raised."""
    controller, _ = build(tmp_path, prometheus, exporter,
                          {"blast_radius": {"max_broken_fraction": 1}}, net=NET)
    rules = tmp_path / "detection-rules"
    rules.mkdir()
    write_detection_rules(rules, DETECTION_YML)
    settings = Settings(prometheus=PrometheusSettings(url=prometheus.url),
                        state=StateSettings(dir=tmp_path / "state"),
                        rules=RulesSettings(dir=rules))
    controller.watch = AnomalyWatch(settings, connect(settings.prometheus),
                                    controller.inventory.by_prometheus_host())
    crash(exporter, prometheus, net=NET)
    exporter.gauge.labels(f"{NET}.1:9101", "r2-cpu").set(0.95)
    try:
        prometheus.wait_for(f'selfheal_test_service_up{{unit="r2-cpu",instance="{NET}.1:9101"}}')
        report = controller.sweep(dry_run=True)
        assert report.anomalies is not None and report.anomalies.findings
        assert not (settings.state.dir / STATE_FILE).exists()
    finally:
        exporter.gauge.remove(f"{NET}.1:9101", "r2-cpu")
