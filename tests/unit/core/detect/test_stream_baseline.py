"""The streaming baseline: causal, seasonal, sparse."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from orchestrator.core.detect.stream import (
    BaselineParams,
    BaselineState,
    anomaly_score,
    score_series,
)

DAY = 86400.0


def _daily(days: int, step: float = 300.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    t = np.arange(0, days * DAY, step)
    v = 10 + 3 * np.sin(2 * np.pi * t / DAY) + rng.normal(0, 0.3, len(t))
    return t, v


@settings(max_examples=25, deadline=None)
@given(st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=5, max_size=80),
       st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=1, max_size=40))
def test_appending_future_points_never_changes_earlier_scores(head, tail) -> None:
    params = BaselineParams(warmup_points=2, init_points=3)
    t1 = np.arange(len(head)) * 60.0
    t2 = np.arange(len(head) + len(tail)) * 60.0
    s1, f1, _ = score_series(t1, np.array(head), params)
    s2, f2, _ = score_series(t2, np.array(head + tail), params)
    assert np.array_equal(s1, s2[: len(head)])
    assert np.array_equal(f1, f2[: len(head)])


def test_a_spike_is_detected_once_and_quiet_data_is_not() -> None:
    t, v = _daily(10)
    v[2000] += 15
    scores, flags, _ = score_series(t, v)
    assert flags[2000] or flags[2001] or flags[2002]
    assert flags.sum() <= 2
    assert ((scores > 0.5) == flags).all()


def test_a_spike_that_recurs_at_the_same_hour_becomes_seasonal() -> None:
    t = np.arange(0, 10 * DAY, 60.0)
    v = np.full(len(t), 20.0) + np.random.default_rng(1).normal(0, 1, len(t))
    nightly = (t % DAY >= 7200) & (t % DAY < 9600)
    v[nightly] = 95.0
    state = BaselineState.new(1)
    seasonal_last_night = []
    for ti, x in zip(t, v, strict=True):
        step = state.step(float(ti), np.array([x]))
        if ti >= 9 * DAY and (ti % DAY) >= 7800 and (ti % DAY) < 9600:
            seasonal_last_night.append(bool(step.seasonal[0]))
    assert all(seasonal_last_night)


def test_missing_values_neither_detect_nor_change_state() -> None:
    state = BaselineState.new(2)
    state.step(0.0, np.array([1.0, 1.0]))
    level = state.level.copy()
    step = state.step(60.0, np.array([np.nan, 2.0]))
    assert not step.detected[0] and step.seasonal[0]
    assert state.level[0] == level[0] and state.count[0] == 1


def test_anomaly_score_is_in_unit_interval() -> None:
    s = anomaly_score(np.array([0.0, 0.5, 1.0, 5.0]), np.array([False, False, True, True]))
    assert ((s >= 0) & (s <= 1)).all()
    assert (s[:2] < 0.5).all() and (s[2:] > 0.5).all()


def test_vectorised_over_series_equals_one_by_one() -> None:
    t, v = _daily(3)
    w = v[::-1].copy()
    both, fb, _ = score_series(t, np.column_stack([v, w]))
    one, f1, _ = score_series(t, v)
    assert np.allclose(both[:, 0], one) and (fb[:, 0] == f1).all()


def test_a_periodic_spike_raises_the_bar_for_its_next_return() -> None:
    # Equal spikes every 200 points (not on a daily rhythm): without the bump each one is as
    # surprising as the decayed maximum of the last and is detected again.
    t = np.arange(4000) * 300.0
    v = 10 + np.random.default_rng(2).normal(0, 0.3, len(t))
    v[600::200] += 6
    _, bumped, _ = score_series(t, v)
    _, plain, _ = score_series(t, v, BaselineParams(bump=1.0))
    assert bumped[600] and plain[600]
    assert plain.sum() >= 15  # nearly every one of the 17 spikes
    assert bumped.sum() <= plain.sum() // 2


@pytest.mark.parametrize("seed", [4, 5])
def test_a_sustained_shift_in_a_spiky_series_shows_on_the_slow_time_scale(seed: int) -> None:
    # Short spikes lift the fast scale's bar; a 4-sigma shift for 400 points stays under it
    # but stands out on the slow scale. (No seasonal profile: it would absorb the shift.)
    t = np.arange(3000) * 300.0
    v = 10 + np.random.default_rng(seed).normal(0, 1.0, len(t))
    v[300:2000:150] += 20
    v[2000:2400] += 4.0
    flat = {"season_rate": 0.0, "week_rate": 0.0}
    _, fast_only, _ = score_series(t, v, BaselineParams(smooth_slow=0.3, min_surprise=4.0,
                                                        **flat))
    _, both, _ = score_series(t, v, BaselineParams(**flat))
    assert not fast_only[2000:2400].any()
    assert both[2000:2100].any()


def test_points_not_learned_are_judged_and_mark_the_envelope_only() -> None:
    state = BaselineState.new(2)
    for k in range(200):
        state.step(60.0 * k, np.array([1.0, 1.0]))
    level, count = state.level.copy(), state.count.copy()
    step = state.step(60.0 * 200, np.array([9.0, 9.0]), learn=np.array([False, True]))
    assert step.z[0] == step.z[1] > 100  # both judged the same way
    assert state.level[0] == level[0] and state.count[0] == count[0]
    assert state.level[1] > level[1] and state.count[1] == count[1] + 1
    assert state.visit[0, 0] == pytest.approx(8.0)  # the excursion still marks this hour


def test_a_model_pickled_before_the_slow_time_scale_loads_and_runs() -> None:
    state = BaselineState.new(1)
    state.step(0.0, np.array([1.0]))
    old = {k: v for k, v in state.__dict__.items() if k not in ("smoothed_slow", "peak_slow")}
    restored = BaselineState.__new__(BaselineState)
    restored.__setstate__(pickle.loads(pickle.dumps(old)))
    assert restored.smoothed_slow.shape == (1,)
    restored.step(60.0, np.array([1.0]))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_surprise_during_the_warm_up_does_not_set_the_bar_for_later(seed: int) -> None:
    # A spike at point 100, while the model still settles, is never a detection; with the
    # maxima learning from it a 5-sigma shift 700 points later would stay under its bar.
    t = np.arange(1500) * 300.0
    v = 50 + np.random.default_rng(seed).normal(0, 1.0, len(t))
    v[100] += 40
    v[800:810] += 5
    _, early, _ = score_series(t, v, BaselineParams(settle_points=0))
    _, settled, _ = score_series(t, v)
    assert not early.any()
    assert settled[800:810].any() and settled.sum() == 1
