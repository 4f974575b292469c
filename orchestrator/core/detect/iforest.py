"""IsolationForest over per-host vectors of baseline surprises, one model per host group.

Called by ``baseline train`` (``fit_forest`` on the history window, incident windows left out) and
by ``fleet.FleetDetector`` (``ForestModel.score`` once per sweep for the whole fleet in one call).
Features are each signal's harmful-direction surprise from the host's own dynamic baseline plus
the hour of day, so one model serves many hosts. scikit-learn is imported here, lazily: importing
``sklearn.ensemble`` costs seconds and most commands never need it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from orchestrator.core.detect.rules import IForestParams

CLIP = 12.0


def features(surprise: np.ndarray, t: float) -> np.ndarray:
    """Rows (hosts x signals) of harmful-direction surprises plus the hour of day (cyclic)."""
    s = np.clip(np.nan_to_num(np.asarray(surprise, dtype=float)), -CLIP, CLIP)
    angle = 2 * np.pi * (t % 86400.0) / 86400.0
    hour = np.tile([np.sin(angle), np.cos(angle)], (s.shape[0], 1))
    return np.hstack([s, hour])


@dataclass
class ForestModel:
    """A fitted forest and the score below which a row is anomalous."""

    model: Any
    threshold: float
    rows: int

    def score(self, x: np.ndarray) -> np.ndarray:
        """0..1 per row: above 0.5 when the row is more isolated than the threshold allows."""
        raw = self.model.score_samples(x)  # higher = more normal
        return 1.0 / (1.0 + np.exp((raw - self.threshold) * 40.0))


def fit_forest(x: np.ndarray, params: IForestParams | None = None) -> ForestModel:
    """Fit on training rows (already free of incident windows)."""
    from sklearn.ensemble import IsolationForest

    p = params or IForestParams()
    x = np.asarray(x, dtype=float)
    rng = np.random.default_rng(p.seed)
    if len(x) > p.max_rows:
        x = x[rng.choice(len(x), p.max_rows, replace=False)]
    model = IsolationForest(n_estimators=p.trees, random_state=p.seed, n_jobs=1)
    model.fit(x)
    train = model.score_samples(x)
    threshold = float(np.quantile(train, p.contamination)) - 0.02
    return ForestModel(model=model, threshold=threshold, rows=len(x))
