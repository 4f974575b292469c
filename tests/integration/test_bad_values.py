"""NaN and infinite samples from a real Prometheus are unknown, never healthy or firing."""

from __future__ import annotations

import math
import time

import pytest

from orchestrator.config import PrometheusSettings
from orchestrator.core.faults import Signal
from orchestrator.models import Health
from orchestrator.sources.prometheus import PrometheusSource, connect
from tests.integration.conftest import Exporter, RealPrometheus

pytestmark = pytest.mark.integration

HOSTS = {"127.0.42.1": "nan1", "127.0.42.2": "inf2", "127.0.42.3": "ninf3", "127.0.42.4": "ok4"}


@pytest.mark.parametrize("firing_when", ["== 0", "!= 1", "> 0.5"])
def test_nan_and_infinite_samples_are_unknown(prometheus: RealPrometheus, exporter: Exporter,
                                              firing_when: str) -> None:
    g = exporter.gauge
    g.labels("127.0.42.1:8080", "bad-values").set(math.nan)
    g.labels("127.0.42.2:8080", "bad-values").set(math.inf)
    g.labels("127.0.42.3:8080", "bad-values").set(-math.inf)
    g.labels("127.0.42.4:8080", "bad-values").set(1)
    prometheus.wait_for('selfheal_test_service_up{unit="bad-values",instance="127.0.42.4:8080"}')
    prometheus.wait_for('selfheal_test_service_up{unit="bad-values",instance="127.0.42.3:8080"}')
    signal = Signal(name="service_up", promql='selfheal_test_service_up{unit="bad-values"}',
                    firing_when=firing_when)
    settings = PrometheusSettings(url=prometheus.url)
    obs = PrometheusSource(connect(settings), settings).observe([signal], HOSTS, time.time())
    health = {f.host: f.health for f in obs.findings}
    assert health["nan1"] is Health.UNKNOWN
    assert health["inf2"] is Health.UNKNOWN
    assert health["ninf3"] is Health.UNKNOWN
    assert health["ok4"] is (Health.FIRING if firing_when == "> 0.5" else Health.HEALTHY)
    nan = next(f for f in obs.findings if f.host == "nan1")
    assert nan.value is None and "not a number" in nan.evidence[0]
