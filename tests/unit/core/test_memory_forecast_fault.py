"""The shipped fault that fires on a learned detector: ``memory_exhaustion_forecast``.

A detector trained the way ``selfheal baseline train`` trains it (the shipped detection.yml,
a replay of the history window) forecasts the host whose available memory declines steadily;
the shipped fault rules then restart the service whose memory grows there, and only there:
no forecast, or no growing service, means no action.
"""

from __future__ import annotations

from functools import cache

import numpy as np

from orchestrator.core.detect.fleet import train_detector
from orchestrator.core.diagnose import diagnose
from orchestrator.models import Finding, Health
from orchestrator.rules import load_detection, load_rules
from tests.conftest import ROLES_DIR, RULES_DIR

FAULTS = load_rules(RULES_DIR, ROLES_DIR).faults
DETECTION = load_detection(RULES_DIR)
HOSTS = ["leaky", "steady"]
STEP_S = 60.0
NOW = 1_800_000_000.0


@cache
def opinions_after(history_h: float, leaky_from: float, leaky_to: float
                   ) -> frozenset[tuple[str, str, str]]:
    """Train on ``history_h`` hours where the leaky host's available memory falls linearly
    from ``leaky_from`` to ``leaky_to`` over the last 6 h (the steady one hovers at 0.6), then
    judge one more point: every (host, signal, detector) opinion of that step."""
    times = np.arange(NOW - history_h * 3600, NOW, STEP_S)
    rng = np.random.default_rng(7)
    start = NOW - 6 * 3600
    share = np.clip((times - start) / (NOW - start), 0.0, 1.0)
    leaky = leaky_from + (leaky_to - leaky_from) * share + rng.normal(0, 0.003, len(times))
    steady = 0.6 + rng.normal(0, 0.003, len(times))
    detector = train_detector(DETECTION, HOSTS, times,
                              {"memory_available": np.column_stack([leaky, steady])},
                              forest=False)
    step = float(leaky_to + (leaky_to - leaky_from) * STEP_S / (6 * 3600))
    candidates = detector.step(NOW, {"memory_available": np.array([step, 0.6])})
    return frozenset((c.host, c.subject, c.detector) for c in candidates)


def finding(host: str, signal: str, health: Health, **labels: str) -> Finding:
    return Finding(host=host, signal=signal, health=health, observed_at=NOW, labels=labels)


def sweep_findings() -> list[Finding]:
    """Both hosts up, both running a service whose memory grows, none above 128 MiB yet."""
    out = []
    for host in HOSTS:
        out += [finding(host, "node_up", Health.HEALTHY),
                finding(host, "service_memory_growing", Health.FIRING, unit="shop.service",
                        instance=f"{host}:8080"),
                finding(host, "service_memory_high", Health.HEALTHY, unit="shop.service"),
                finding(host, "service_memory_high_after_deploy", Health.HEALTHY,
                        unit="shop.service")]
    return out


def test_a_steady_decline_is_forecast_and_restarts_the_growing_service_there_only() -> None:
    opinions = opinions_after(8, 0.70, 0.40)  # 5 %/h: zero in about 8 h, inside 24 h
    assert ("leaky", "memory_available", "forecast") in opinions
    assert not any(host == "steady" and detector == "forecast"
                   for host, _, detector in opinions)
    verdicts = {v.host: v for v in diagnose(sweep_findings(), FAULTS, HOSTS,
                                            detected=opinions)}
    (leak,) = verdicts["leaky"].diagnoses
    assert (leak.fault, leak.subject) == ("memory_exhaustion_forecast", "unit=shop.service")
    assert leak.remediations == ("service_restart_memory",)
    assert "forecast detector: memory_available anomalous" in leak.evidence
    assert verdicts["steady"].diagnoses == ()  # its service grows, but no exhaustion is near


def test_without_a_forecast_a_growing_service_alone_is_left_alone() -> None:
    opinions = opinions_after(8, 0.60, 0.59)  # flat: nothing to forecast
    assert not any(detector == "forecast" for _, _, detector in opinions)
    assert all(v.diagnoses == () for v in diagnose(sweep_findings(), FAULTS, HOSTS,
                                                   detected=opinions))


def test_a_short_history_forecasts_nothing() -> None:
    # under half the 6 h window of points: the trend is not trusted yet
    assert not any(d == "forecast" for _, _, d in opinions_after(2, 0.70, 0.40))


def test_the_leak_over_the_threshold_supersedes_the_forecast() -> None:
    opinions = opinions_after(8, 0.70, 0.40)
    findings = [f for f in sweep_findings() if f.signal != "service_memory_high"] + [
        finding(h, "service_memory_high", Health.FIRING, unit="shop.service") for h in HOSTS]
    verdicts = {v.host: v for v in diagnose(findings, FAULTS, HOSTS, detected=opinions)}
    assert [d.fault for d in verdicts["leaky"].diagnoses] == ["memory_leak"]
