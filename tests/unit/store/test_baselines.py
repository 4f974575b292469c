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


def test_saved_privately_whatever_the_umask(tmp_path: Path) -> None:
    import os

    from orchestrator.store.baselines import save_baseline

    old = os.umask(0o002)
    try:
        pkl = save_baseline(tmp_path / "b", "fleet", {"x": 1}, trained_at=1.0,
                            window=(0.0, 1.0), hosts=["a"])
    finally:
        os.umask(old)
    assert pkl.stat().st_mode & 0o777 == 0o600
    assert pkl.with_suffix(".json").stat().st_mode & 0o777 == 0o600


def test_untrusted_pickle_is_never_loaded(tmp_path: Path) -> None:
    import pickle
    import time as _time

    from orchestrator.store.baselines import load_baseline, save_baseline

    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):  # type: ignore[no-untyped-def]
            return (open, (str(marker), "w"))

    pkl = save_baseline(tmp_path, "fleet", {"x": 1}, trained_at=_time.time(),
                        window=(0.0, 1.0), hosts=["a"])
    pkl.write_bytes(pickle.dumps(Payload()))
    pkl.chmod(0o666)
    for unpickle in (True, False):
        model, status = load_baseline(tmp_path, "fleet", now=_time.time(), max_age_s=3600,
                                      unpickle=unpickle)
        assert model is None and not status.usable
        assert "writable by group or others" in status.message
    assert not marker.exists()
