"""The sweep's detection stage (``AnomalyWatch``) against a real Prometheus.

Signals come from a test ``detection.yml`` over the exporter's gauge, so the test decides every
value: thresholds-only fallback without a model, one query per signal, unknown hosts, and the
streaming state saved by one watch and restored (or discarded) by the next, as one-shot sweeps
from cron do.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from orchestrator.config import PrometheusSettings, RulesSettings, Settings, StateSettings
from orchestrator.detection import STATE_FILE, AnomalyWatch
from orchestrator.sources.prometheus import connect
from tests.conftest import write_detection_rules
from tests.integration.conftest import Exporter, RealPrometheus
from tests.integration.test_prometheus_source import CountingQuery

pytestmark = pytest.mark.integration

DETECTION_YML = """
signals:
  t_cpu:
    promql: sum by (instance) (selfheal_test_service_up{unit="det-cpu"})
    harmful: up
    threshold: "> 0.9"
  t_mem:
    promql: sum by (instance) (selfheal_test_service_up{unit="det-mem"})
    harmful: down
    threshold: "< 0.1"
"""
HOSTS = {"127.0.2.1": "db1", "127.0.2.2": "db2", "127.0.2.3": "db3"}


def settings_for(prometheus: RealPrometheus, tmp_path: Path) -> Settings:
    rules = tmp_path / "rules"
    rules.mkdir(exist_ok=True)
    write_detection_rules(rules, DETECTION_YML)
    return Settings(prometheus=PrometheusSettings(url=prometheus.url),
                    state=StateSettings(dir=tmp_path / "state"), rules=RulesSettings(dir=rules))


@pytest.fixture()
def published(prometheus: RealPrometheus, exporter: Exporter) -> None:
    g = exporter.gauge
    g.labels("127.0.2.1:9100", "det-cpu").set(0.95)  # over the threshold
    g.labels("127.0.2.2:9100", "det-cpu").set(0.2)
    g.labels("127.0.2.1:9100", "det-mem").set(0.5)
    g.labels("127.0.2.2:9100", "det-mem").set(0.6)  # db3 publishes nothing: unknown
    prometheus.wait_for('selfheal_test_service_up{unit="det-mem",instance="127.0.2.2:9100"}')
    prometheus.wait_for('selfheal_test_service_up{unit="det-cpu",instance="127.0.2.1:9100"} > 0.9')


def test_without_a_model_thresholds_only_and_says_how_to_fix(
        prometheus: RealPrometheus, published: None, tmp_path: Path) -> None:
    settings = settings_for(prometheus, tmp_path)
    query = CountingQuery(connect(settings.prometheus))
    watch = AnomalyWatch(settings, query, HOSTS)
    report = watch.observe(time.time())
    assert report.fallback
    assert "no baseline model under" in report.model_status
    assert "selfheal baseline train" in report.model_status
    assert len(query.calls) == 2  # one instant query per signal for the whole fleet
    assert [(f.host, f.signal, f.source) for f in report.findings] == [
        ("db1", "t_cpu", "detect:thresholds")]
    assert report.unknown_hosts == ("db3",)
    assert set(report.unknown) == {("db3", "t_cpu"), ("db3", "t_mem")}


def test_state_is_saved_and_restored_by_the_next_process(
        prometheus: RealPrometheus, published: None, tmp_path: Path) -> None:
    settings = settings_for(prometheus, tmp_path)
    t0 = time.time()
    first = AnomalyWatch(settings, connect(settings.prometheus), HOSTS, clock=lambda: t0)
    assert len(first.observe(t0).findings) == 1
    state = settings.state.dir / STATE_FILE
    assert state.is_file() and state.stat().st_mode & 0o077 == 0
    # A one-shot sweep a minute later: restored, so the finding is not raised again (dedup).
    second = AnomalyWatch(settings, connect(settings.prometheus), HOSTS, clock=lambda: t0 + 60)
    report = second.observe(t0 + 60)
    assert any("restored" in n for n in report.notes)
    assert report.findings == ()
    assert second.detector.last_t == t0 + 60
    # Too soon for the next point: no step, and it says so.
    again = second.observe(t0 + 70)
    assert any("one point per 60 s" in n for n in again.notes)


def test_old_state_or_another_host_set_is_discarded(
        prometheus: RealPrometheus, published: None, tmp_path: Path) -> None:
    settings = settings_for(prometheus, tmp_path)
    t0 = time.time()
    AnomalyWatch(settings, connect(settings.prometheus), HOSTS).observe(t0)
    late = AnomalyWatch(settings, connect(settings.prometheus), HOSTS, clock=lambda: t0 + 3600)
    assert any("min old" in n and "discarded" in n for n in late.notes)
    fewer = dict(list(HOSTS.items())[:2])
    other = AnomalyWatch(settings, connect(settings.prometheus), fewer, clock=lambda: t0 + 60)
    assert any("another host set" in n for n in other.notes)


def test_diagnose_style_observe_changes_no_state(
        prometheus: RealPrometheus, published: None, tmp_path: Path) -> None:
    """`selfheal diagnose` looks without learning: a later sweep still raises the finding."""
    settings = settings_for(prometheus, tmp_path)
    t0 = time.time()
    watch = AnomalyWatch(settings, connect(settings.prometheus), HOSTS, clock=lambda: t0)
    peek = watch.observe(t0, persist=False)
    assert len(peek.findings) == 1
    assert not (settings.state.dir / STATE_FILE).exists()
    assert watch.detector.last_t is None and watch.last_raised == {}
    assert len(watch.observe(t0).findings) == 1  # the real sweep is not deduplicated away
