"""NAB scoring against a hand-computed example."""

from __future__ import annotations

import math

import pytest

from orchestrator.core.detect import nab

STANDARD = nab.PROFILES[0]


def test_scaled_sigmoid_matches_nab_reference_points() -> None:
    assert nab.scaled_sigmoid(-1.0) == pytest.approx(0.98661, abs=1e-5)
    assert nab.scaled_sigmoid(-0.5) == pytest.approx(0.84828, abs=1e-5)
    assert nab.scaled_sigmoid(0.0) == pytest.approx(0.0)
    assert nab.scaled_sigmoid(3.0) == -1.0


def test_probation_is_15_percent_capped_at_750_rows() -> None:
    assert nab.probation_length(20) == 3
    assert nab.probation_length(4032) == 604
    assert nab.probation_length(15000) == 750


def test_hand_computed_file() -> None:
    # 20 rows, probation = 3 rows, one window on rows 10..14 (width 5).
    flags = [False] * 20
    flags[1] = True   # probationary: ignored
    flags[5] = True   # before any window: full FP cost, -0.11
    flags[12] = True  # in window, position -(14-12+1)/5 = -0.6: 0.905148 / 0.986614 = 0.917429
    flags[13] = True  # later detection in the same window: ignored
    flags[18] = True  # after the window, position |14-18|/(5-1) = 1.0: -0.986614 * 0.11
    s = nab.score_file(flags, [(10, 14)], STANDARD)
    assert s.windows == 1 and s.detected == 1 and s.false_positives == 2
    assert s.score == pytest.approx(0.917429 - 0.11 - 0.108528, abs=1e-5)
    # normalised: null = -1, perfect = +1 -> 100 * (0.698901 + 1) / 2
    assert nab.normalised([s], STANDARD) == pytest.approx(84.945, abs=1e-3)


def test_missed_window_costs_fn_weight_per_profile() -> None:
    low_fn = nab.PROFILES[2]
    s = nab.score_file([False] * 40, [(20, 25)], low_fn)
    assert s.score == -2.0 and s.missed == 1
    assert nab.normalised([s], low_fn) == 0.0


def test_first_row_of_window_is_perfect() -> None:
    flags = [False] * 40
    flags[20] = True
    s = nab.score_file(flags, [(20, 25)], STANDARD)
    assert s.score == pytest.approx(1.0)
    assert nab.normalised([s], STANDARD) == pytest.approx(100.0)


def test_window_wholly_in_probation_is_not_scored() -> None:
    s = nab.score_file([False] * 100, [(2, 5)], STANDARD)
    assert s.windows == 0 and s.score == 0.0


def test_window_rows_maps_times_inclusively() -> None:
    times = [0.0, 60.0, 120.0, 180.0, 240.0]
    assert nab.window_rows(times, [(60.0, 180.0)]) == [(1, 3)]
    assert nab.window_rows(times, [(61.0, 119.0)]) == []
    assert math.isfinite(nab.scaled_sigmoid(-0.2))
