"""Forecast, patterns, combiner and the fleet detector on small, exact inputs."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from orchestrator.config import PROJECT_ROOT
from orchestrator.core.detect import Candidate, FleetDetector, combine
from orchestrator.core.detect.forecast import nanmedian_rows, time_to_exhaustion
from orchestrator.core.detect.patterns import pattern_holds
from orchestrator.core.detect.rules import CombinerParams, ForecastParams
from orchestrator.models import Health
from orchestrator.rules import load_detection

RULES = load_detection(PROJECT_ROOT / "rules")


def test_time_to_exhaustion_of_a_steady_decline() -> None:
    t = np.arange(0, 6 * 3600 + 1, 60.0)
    declining = 0.5 - 0.01 * t / 3600  # 1 % per hour
    flat = np.full(len(t), 0.5)
    tte = time_to_exhaustion(t, np.vstack([declining, flat]), float(t[-1]), ForecastParams())
    assert tte[0] == pytest.approx(0.44 / 0.01 * 3600, rel=0.02)
    assert np.isinf(tte[1])


def test_a_short_dip_is_not_a_trend() -> None:
    t = np.arange(0, 6 * 3600 + 1, 60.0)
    v = np.full(len(t), 0.5)
    v[-30:] -= 0.05  # a 30-minute backup archive at the end of the window
    assert np.isinf(time_to_exhaustion(t, v[None, :], float(t[-1]))[0])


def test_ddos_pattern_needs_all_conditions() -> None:
    pattern = RULES.patterns["possible_ddos"]
    values = {"cpu": np.array([0.9, 0.9]), "memory_available": np.array([0.6, 0.6]),
              "network_in": np.array([1e9, 1e9])}
    z = {"cpu": np.array([5.0, 5.0]), "memory_available": np.array([0.0, 0.0]),
         "network_in": np.array([8.0, 1.0])}
    assert pattern_holds(pattern, values, z, 3.0).tolist() == [True, False]
    seasonal = {k: np.array([True, False]) for k in z}
    assert pattern_holds(pattern, values, z, 3.0, seasonal).tolist() == [False, False]


def test_combiner_merges_scores_and_deduplicates() -> None:
    c = [Candidate("h1", "cpu", "baseline", 100.0, 0.5, 0.9, "z=5"),
         Candidate("h1", "cpu", "thresholds", 100.0, 0.5, 0.9, "cpu > 0.9"),
         Candidate("h2", "cpu", "baseline", 100.0, 0.2)]
    found, raised = combine(c, CombinerParams(min_confidence=0.5, dedup_s=600))
    assert len(found) == 1
    f = found[0]
    assert f.host == "h1" and f.health is Health.FIRING and f.confidence == pytest.approx(0.75)
    assert f.source == "detect:baseline+thresholds" and len(f.evidence) == 2
    again, _ = combine(c[:1], CombinerParams(dedup_s=600), raised)
    assert again == ()
    later, _ = combine([Candidate("h1", "cpu", "baseline", 800.0, 0.9)],
                       CombinerParams(dedup_s=600), raised)
    assert len(later) == 1


def test_fleet_detector_finds_a_cpu_runaway_on_one_host_only() -> None:
    hosts = ["a", "b", "c"]
    fd = FleetDetector(RULES, hosts, detectors=("baseline", "thresholds"))
    rng = np.random.default_rng(0)
    found = []
    for k in range(600):
        cpu = 0.2 + rng.normal(0, 0.02, 3)
        if k >= 550:
            cpu[1] = 0.99
        vals = {"cpu": cpu, "memory_available": np.full(3, 0.6), "node_up": np.ones(3)}
        found += fd.step(60.0 * k, vals)
    assert {c.host for c in found} == {"b"}
    assert {c.detector for c in found} == {"baseline", "thresholds"}


def test_unknown_detector_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown detectors"):
        FleetDetector(RULES, ["a"], detectors=("magic",))


def test_a_missing_sample_does_not_reset_a_threshold_hold() -> None:
    from orchestrator.core.detect.thresholds import ThresholdClock

    rule = next(r for r in RULES.signals.values() if r.threshold and r.threshold.startswith(">"))
    high = float(rule.threshold.split()[-1]) * 1.05 + 1e-6
    clock = ThresholdClock(1)
    fired = []
    for k in range(int(rule.for_s // 30) + 4):
        x = np.array([np.nan if k % 2 else high])  # every second scrape is missing
        fired.append(bool(clock.step(rule, k * 30.0, x)[0]))
    assert any(fired), "a held threshold with gaps in the data never fired"
    assert not any(f for k, f in enumerate(fired) if k % 2), "fired on a missing sample"


def test_infinite_values_are_treated_as_missing() -> None:
    from orchestrator.core.detect.stream import BaselineParams, BaselineState

    state = BaselineState.new(2, BaselineParams())
    for k in range(50):
        state.step(k * 60.0, np.array([0.3, np.inf if k == 25 else 0.3]))
    assert np.isfinite(state.level).all() and np.isfinite(state.day).all()


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.one_of(st.floats(-1e3, 1e3), st.just(float("nan"))),
                         min_size=1, max_size=9), min_size=1, max_size=5)
       .filter(lambda rows: len({len(r) for r in rows}) == 1))
def test_nanmedian_rows_is_numpys_nanmedian(rows: list[list[float]]) -> None:
    x = np.array(rows)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        expected = np.nanmedian(x, axis=1)
    assert np.allclose(nanmedian_rows(x), expected, equal_nan=True)
