"""IsolationForest over per-host vectors of baseline surprises, one model per host group.

Called by ``baseline train`` (``fit_forest`` on the history window, incident windows left out) and
by ``fleet.FleetDetector`` (``ForestModel.score`` once per sweep for the whole fleet in one call).
Features are each signal's harmful-direction surprise from the host's own dynamic baseline (zero
where the value lies inside its seasonal envelope, so a nightly backup or a weekly batch job is
not "surprising"), the total harmful surprise of the row, and the hour of day, so one model serves
many hosts. scikit-learn is imported here, lazily: importing ``sklearn.ensemble`` costs seconds
and most commands never need it.

Why these features: a forest isolates a row no further than the most extreme training rows along
a feature, so recurring benign excursions left in the training rows (the nightly backup drives
CPU to 12 scales) made every fault look normal. Masking seasonal values removes them; the total
surprise gives the forest one dimension along which any multi-signal excursion stands out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from orchestrator.core.detect.rules import IForestParams

CLIP = 12.0


def features(surprise: np.ndarray, seasonal: np.ndarray, t: float) -> np.ndarray:
    """Rows (hosts x features) from harmful-direction surprises (hosts x signals).

    Features: each signal's surprise (0 where ``seasonal`` marks it as within what the same hour
    of earlier days or weeks looked like), the root of the summed squares of the harmful
    (positive) surprises, and the hour of day as a point on the unit circle.
    """
    s = np.nan_to_num(np.asarray(surprise, dtype=float))
    s = np.clip(np.where(np.asarray(seasonal, dtype=bool), 0.0, s), -CLIP, CLIP)
    total = np.sqrt(np.sum(np.maximum(s, 0.0) ** 2, axis=1, keepdims=True))
    angle = 2 * np.pi * (t % 86400.0) / 86400.0
    hour = np.tile([np.sin(angle), np.cos(angle)], (s.shape[0], 1))
    return np.hstack([s, total, hour])


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


def confirmed_scores(raw: np.ndarray, series: np.ndarray, confirm: int) -> np.ndarray:
    """Per series, the highest (most normal) raw score of every ``confirm`` consecutive rows.

    A finding needs ``confirm`` anomalous sweeps in a row, so the row that decides is the most
    normal one of the run. ``series`` gives each row's series (host); rows of a series are in
    time order. Series shorter than ``confirm`` contribute nothing.
    """
    raw = np.asarray(raw, dtype=float)
    series = np.asarray(series)
    out: list[np.ndarray] = []
    for key in np.unique(series):
        s = raw[series == key]
        if len(s) >= confirm:
            out.append(np.lib.stride_tricks.sliding_window_view(s, confirm).max(axis=1))
    return np.concatenate(out) if out else np.array([])


def fit_forest(x: np.ndarray, params: IForestParams | None = None,
               series: np.ndarray | None = None, confirm: int = 1) -> ForestModel:
    """Fit on training rows (already free of incident windows and of the baseline's warm-up).

    ``series`` (one id per row, rows of a series in time order) and ``confirm`` (the sweeps in a
    row a finding needs, ``confirm_points``) set the threshold: the ``contamination`` quantile of
    the training runs of ``confirm`` rows, so that share of normal runs would have raised a
    finding. Short, rare benign blips (a deploy restart) thus do not lift the threshold above
    what a sustained fault scores. Without ``series`` every row is its own run.
    """
    from sklearn.ensemble import IsolationForest

    p = params or IForestParams()
    x = np.asarray(x, dtype=float)
    ids = np.arange(len(x)) if series is None else np.asarray(series)
    rng = np.random.default_rng(p.seed)
    fit_rows = x[rng.choice(len(x), p.max_rows, replace=False)] if len(x) > p.max_rows else x
    model = IsolationForest(n_estimators=p.trees, random_state=p.seed, n_jobs=1)
    model.fit(fit_rows)
    if series is None or confirm <= 1:
        threshold = float(np.quantile(model.score_samples(fit_rows), p.contamination))
        return ForestModel(model=model, threshold=threshold, rows=len(fit_rows))
    # Score whole series (runs need consecutive rows), as many as max_rows allows.
    keys, counts = np.unique(ids, return_counts=True)
    order = rng.permutation(len(keys))
    keep = keys[order][np.cumsum(counts[order]) <= max(p.max_rows, int(counts.max()))]
    chosen = np.isin(ids, keep)
    runs = confirmed_scores(model.score_samples(x[chosen]), ids[chosen], confirm)
    if not len(runs):  # every series shorter than a run: judge single rows
        runs = model.score_samples(fit_rows)
    return ForestModel(model=model, threshold=float(np.quantile(runs, p.contamination)),
                       rows=len(fit_rows))
