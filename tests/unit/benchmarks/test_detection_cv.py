"""benchmarks/detection.py: the NAB leave-one-folder-out cross-validation on a tiny data set."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from orchestrator.config import PROJECT_ROOT

sys.path.insert(0, str(PROJECT_ROOT / "benchmarks"))
import detection


def _nab_dir(tmp_path: Path) -> Path:
    """Three folders of two files: noise with one clear level jump inside a labelled window."""
    labels: dict[str, list[list[str]]] = {}
    for k, folder in enumerate(("alpha", "beta", "gamma")):
        (tmp_path / "data" / folder).mkdir(parents=True)
        for j in range(2):
            rng = np.random.default_rng(10 * k + j)
            stamps = pd.date_range("2024-01-01", periods=800, freq="5min")
            v = 10 + rng.normal(0, 0.5, 800)
            v[600:] += 8
            name = f"{folder}/f{j}.csv"
            pd.DataFrame({"timestamp": stamps.strftime("%Y-%m-%d %H:%M:%S"), "value": v}
                         ).to_csv(tmp_path / "data" / name, index=False)
            labels[name] = [[str(stamps[590]), str(stamps[640])]]
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "combined_windows.json").write_text(json.dumps(labels))
    return tmp_path


def test_each_fold_is_scored_with_a_pick_made_without_it(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    # Two candidates: a detector (min_surprise 3) and one that can never fire.
    monkeypatch.setattr(detection, "CANDIDATES", {"min_surprise": (3.0, 1e9),
                                                  "min_surprise_fast": (4.0, 1e9)})
    result = detection.run_nab(_nab_dir(tmp_path), progress=False)
    cv = result["cv"]
    assert cv["candidates"] == 4 and [f["held_out"] for f in cv["folds"]] == [
        "alpha", "beta", "gamma"]
    for fold in cv["folds"]:
        assert fold["picked"] == {"min_surprise": 3.0, "min_surprise_fast": 4.0}
        assert fold["windows"] == 2 and fold["standard"] > 50
    assert cv["worst"]["standard"] == min(f["standard"] for f in cv["folds"])
    assert cv["pooled"]["standard"] > 50
    assert result["in_sample"]["standard"] > 50


def test_selection_uses_only_the_tuning_folders() -> None:
    f = detection.NabFile("x/a.csv", "x", np.arange(100.0), np.zeros(100), [(50, 60)])
    g = detection.NabFile("y/b.csv", "y", np.arange(100.0), np.zeros(100), [(50, 60)])
    raw = np.zeros((2, 2, 3, 2))
    raw[0, :, :, 0] = [[1.0] * 3, [-1.0] * 3]  # candidate 0: perfect on a, misses b
    raw[1, :, :, 0] = [[-1.0] * 3, [1.0] * 3]  # candidate 1: the other way round
    assert detection.select(raw, [f, g], [0]) == 0
    assert detection.select(raw, [f, g], [1]) == 1
