"""Forest features and threshold, training replay, and carrying a detector to another host set."""

from __future__ import annotations

import numpy as np

from orchestrator.config import PROJECT_ROOT
from orchestrator.core.detect.fleet import (
    LEARNED,
    MASK_PAD_S,
    FleetDetector,
    flagged_mask,
    train_detector,
)
from orchestrator.core.detect.iforest import confirmed_scores, features, fit_forest
from orchestrator.core.detect.rules import IForestParams
from orchestrator.rules import load_detection

RULES = load_detection(PROJECT_ROOT / "rules")


def test_seasonal_surprises_are_masked_and_summed() -> None:
    z = np.array([[12.0, 4.0, -3.0], [20.0, 0.0, 0.0]])
    seasonal = np.array([[True, False, False], [False, False, False]])
    rows = features(z, seasonal, 6 * 3600.0)
    assert rows[0, :3].tolist() == [0.0, 4.0, -3.0]
    assert rows[1, 0] == 12.0  # clipped
    assert rows[:, 3].tolist() == [4.0, 12.0]  # total harmful surprise ignores the benign sign
    assert np.allclose(rows[0, 4:], [1.0, 0.0])  # 06:00 on the unit circle


def test_confirmed_scores_take_the_most_normal_row_of_each_run() -> None:
    raw = np.array([-0.9, -0.8, -0.3, -0.9, -0.9, -0.2])
    series = np.array([0, 0, 0, 1, 1, 1])
    assert confirmed_scores(raw, series, 2).tolist() == [-0.8, -0.3, -0.9, -0.2]
    assert len(confirmed_scores(raw, series, 4)) == 0


def test_short_blips_do_not_set_the_threshold_but_sustained_runs_exceed_it() -> None:
    rng = np.random.default_rng(0)
    normal = rng.normal(0, 1, (4000, 3))
    normal[::400] += 8.0  # one-row blips, as a deploy restart makes
    series = np.repeat(np.arange(4), 1000)
    params = IForestParams(trees=50, contamination=0.01)
    per_row = fit_forest(normal, params)
    per_run = fit_forest(normal, params, series=series, confirm=10)
    assert per_run.threshold > per_row.threshold  # runs of 10 are judged by their most normal row
    sustained = np.tile([8.0, 8.0, 0.0], (10, 1))
    assert (per_run.score(sustained) > 0.5).all()


def test_training_masks_incidents_and_fits_the_forest() -> None:
    rng = np.random.default_rng(1)
    hosts = ["a", "b"]
    times = 60.0 * np.arange(400)
    cpu = 0.2 + rng.normal(0, 0.02, (400, 2))
    cpu[300:350, 1] = 0.99  # an incident on b, left out
    clean = np.ones((400, 2), dtype=bool)
    clean[300:350, 1] = False
    values = {"cpu": cpu, "memory_available": np.full((400, 2), 0.6), "node_up": np.ones((400, 2))}
    seen: list[int] = []
    fd = train_detector(RULES, hosts, times, values, clean, progress=seen.append)
    assert seen[-1] == 2 * 400 and fd.forest is not None and fd.detectors == LEARNED
    assert fd.baselines["cpu"].count.tolist() == [400, 350]
    assert abs(fd.baselines["cpu"].level[1] - 0.2) < 0.05


def test_reindexed_carries_state_by_host_and_starts_new_hosts_fresh() -> None:
    fd = FleetDetector(RULES, ["a", "b"], detectors=("baseline",))
    for k in range(20):
        fd.step(60.0 * k, {"cpu": np.array([0.1, 0.5])})
    moved = fd.reindexed(["web-b", "web-new"], ["b", None])
    assert moved.hosts == ("web-b", "web-new")
    assert moved.baselines["cpu"].level[0] == fd.baselines["cpu"].level[1]
    assert moved.baselines["cpu"].count.tolist() == [20, 0]
    assert moved.last_t == fd.last_t and moved.detectors == ("baseline",)
    moved.step(60.0 * 20, {"cpu": np.array([0.5, 0.3])})  # still a working detector


def _history(rows: int = 600) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    rng = np.random.default_rng(1)
    times = 60.0 * np.arange(rows)
    cpu = 0.2 + rng.normal(0, 0.02, (rows, 2))
    cpu[400:450, 1] = 0.99  # a fault on b that nobody stored as an incident
    return times, {"cpu": cpu, "memory_available": np.full((rows, 2), 0.6),
                   "node_up": np.ones((rows, 2))}


def test_training_leaves_out_what_the_detector_itself_flags() -> None:
    times, values = _history()
    fd = train_detector(RULES, ["a", "b"], times, values, None)
    assert [h for h, _, _ in fd.self_masked] == ["b"]
    _, start, end = fd.self_masked[0]
    assert start <= times[400] and end >= times[449]  # the whole fault, padded
    assert fd.baselines["cpu"].count[0] == 600
    assert fd.baselines["cpu"].count[1] < 600 - 50  # the fault was not learned
    # The fault still marks its half-hours in b's seasonal envelope.
    assert fd.baselines["cpu"].day_hi[1].max() > 0.5


def test_without_self_masking_the_fault_is_learned_as_normal() -> None:
    times, values = _history()
    fd = train_detector(RULES, ["a", "b"], times, values, None, self_mask=False)
    assert fd.self_masked == () and fd.baselines["cpu"].count[1] == 600


def test_flagged_mask_pads_and_merges_flagged_sweeps() -> None:
    times, values = _history()
    mask, windows = flagged_mask(RULES, ["a", "b"], times, values)
    assert len(windows) == 1 and not mask[:, 0].any()
    first = int(np.argmax(mask[:, 1]))
    pad = int((RULES.defaults.confirm_points * 60.0 + MASK_PAD_S) // 60.0)
    assert first <= 400 and first >= 400 - pad  # from before the fault was confirmed
    assert mask[400:450, 1].all()
