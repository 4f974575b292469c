"""Baseline artefacts: metadata sidecar, staleness, fallback messages."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from orchestrator.core.detect.stream import BaselineState
from orchestrator.store.baselines import BaselineHealth, load_baseline, save_baseline


def test_round_trip_with_metadata(tmp_path: Path) -> None:
    state = BaselineState.new(3)
    state.step(0.0, np.array([1.0, 2.0, 3.0]))
    save_baseline(tmp_path, "fleet", state, trained_at=1000.0, window=(0.0, 7 * 86400.0),
                  hosts=["a", "b", "c"])
    meta = json.loads((tmp_path / "fleet.json").read_text())
    assert meta["window"]["days"] == 7.0 and "numpy" in meta["versions"]
    model, status = load_baseline(tmp_path, "fleet", now=2000.0, max_age_s=3600)
    assert status.usable and np.array_equal(model.level, state.level)


def test_missing_and_stale_fall_back_to_thresholds(tmp_path: Path) -> None:
    model, status = load_baseline(tmp_path, "fleet", now=0.0, max_age_s=10)
    assert model is None and status.health is BaselineHealth.MISSING
    assert "falling back to fixed thresholds" in status.message
    save_baseline(tmp_path, "fleet", {"x": 1}, trained_at=0.0, window=(0.0, 1.0), hosts=[])
    model, status = load_baseline(tmp_path, "fleet", now=100.0, max_age_s=10)
    assert model is None and status.health is BaselineHealth.STALE


def test_unreadable_model_is_reported_not_raised(tmp_path: Path) -> None:
    save_baseline(tmp_path, "fleet", {"x": 1}, trained_at=0.0, window=(0.0, 1.0), hosts=[])
    (tmp_path / "fleet.pkl").write_bytes(b"not a pickle")
    model, status = load_baseline(tmp_path, "fleet", now=1.0, max_age_s=10)
    assert model is None and status.health is BaselineHealth.UNREADABLE
