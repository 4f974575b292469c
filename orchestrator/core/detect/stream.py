"""The streaming dynamic baseline: one robust, seasonal model per series, vectorised over series.

Called by ``orchestrator.core.detect.fleet`` (the sweep: one new point for every host and signal
at once), by ``orchestrator.cli.detect`` (``selfheal detect-csv``: every row of a file, one series
per value column) and by ``benchmarks/detection.py``. All three use ``BaselineState.step``, so the
offline figures are those of the sweep.

Each series keeps a level, a scale and a daily (and weekly) seasonal profile, all updated with
clipped, exponentially weighted steps, so one outlier moves them little and a spike that recurs at
the same hour of the day (or of the week) becomes part of the normal. A point is judged only from
the state built from earlier points (causal): its surprise ``z = |x - expected| / scale`` is
smoothed, and the series *detects* when the smoothed surprise is at least as large as anything it
has seen recently (a decaying maximum), above an absolute floor, outside the warm-up and outside the
quiet period after its previous detection. The detections are therefore sparse, which is what an
on-call human (and the NAB score) rewards. The frozen defaults below were tuned once on the NAB
tuning subset and are not tuned per file or per host.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any, NamedTuple

import numpy as np

DAY_S = 86400.0
WEEK_S = 7 * DAY_S


@dataclass(frozen=True)
class BaselineParams:
    """Frozen defaults of the streaming baseline (tuned once on the NAB tuning subset)."""

    day_bins: int = 48
    """Bins per day of the daily seasonal profile (48: half-hour bins)."""
    week_bins: int = 168
    """Bins per week of the weekly correction (168: hourly); 0 turns it off."""
    level_rate: float = 0.01
    """Weight of a new point in the level (per point)."""
    scale_rate: float = 0.001
    """Weight of a new point in the scale (mean absolute, clipped residual)."""
    season_rate: float = 0.2
    """Weight of a new point in its daily seasonal bin."""
    week_rate: float = 0.03
    """Weight of a new point in its weekly bin (a correction on top of the daily profile)."""
    clip: float = 3.0
    """Residuals are clipped to this many scales before they update anything (robustness)."""
    init_points: int = 50
    """Points whose mean absolute step seeds the scale."""
    smooth: float = 0.15
    """Weight of a new point's surprise in the smoothed surprise."""
    memory_points: float = 2000.0
    """Time constant (points) of the decaying maximum of past surprise."""
    ratio: float = 1.0
    """A detection needs smoothed surprise >= ratio x the decayed past maximum ..."""
    min_surprise: float = 3.0
    """... and at least this many scales."""
    warmup_points: int = 150
    """No detection before this many points of a series."""
    quiet_points: int = 100
    """After a detection, the series stays quiet for this many points."""
    scale_floor: float = 0.001
    """Scale is at least this fraction of |level| (quantised or flat series)."""
    envelope_keep: float = 0.7
    """Seasonal envelope: share of a bin's past excursion kept when the bin comes round again."""
    envelope_margin: float = 1.5
    """A point within this multiple of its bin's past excursion (daily or weekly) is normal."""

    @classmethod
    def from_mapping(cls, data: dict[str, Any]) -> BaselineParams:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


class Step(NamedTuple):
    """One step's verdict per series."""

    strength: np.ndarray
    """>= 1 when the point is as surprising as the detection rule requires."""
    detected: np.ndarray
    """The sparse detection: strength >= 1 outside the warm-up and the quiet period."""
    z: np.ndarray
    """Signed surprise in scales (the multi-metric patterns read its sign)."""
    seasonal: np.ndarray
    """The point lies within what the same hour of earlier days or weeks looked like."""


@dataclass
class BaselineState:
    """Per-series state of the baseline, as arrays of shape (series,) or (series, bins).

    This is the trained model of the dynamic baseline: ``baseline train`` runs history through
    it, the store saves it, and every sweep calls ``step`` once with the fleet's newest values.
    """

    params: BaselineParams
    count: np.ndarray
    level: np.ndarray
    scale: np.ndarray
    abs_step: np.ndarray
    prev: np.ndarray
    day: np.ndarray
    week: np.ndarray
    smoothed: np.ndarray
    peak: np.ndarray
    last_detection: np.ndarray
    day_hi: np.ndarray
    day_lo: np.ndarray
    week_hi: np.ndarray
    week_lo: np.ndarray
    visit: np.ndarray
    bins_at: np.ndarray

    @classmethod
    def new(cls, series: int, params: BaselineParams | None = None) -> BaselineState:
        p = params or BaselineParams()
        z = np.zeros(series)
        return cls(params=p, count=np.zeros(series, dtype=np.int64), level=z.copy(),
                   scale=z.copy(), abs_step=z.copy(), prev=np.full(series, np.nan),
                   day=np.zeros((series, p.day_bins)),
                   week=np.zeros((series, max(p.week_bins, 1))), smoothed=z.copy(),
                   peak=z.copy(), last_detection=np.full(series, -(10**12), dtype=np.int64),
                   day_hi=np.zeros((series, p.day_bins)), day_lo=np.zeros((series, p.day_bins)),
                   week_hi=np.zeros((series, max(p.week_bins, 1))),
                   week_lo=np.zeros((series, max(p.week_bins, 1))),
                   visit=np.zeros((4, series)), bins_at=np.array([-1, -1], dtype=np.int64))

    @property
    def series(self) -> int:
        return len(self.level)

    def expected(self, t: float) -> np.ndarray:
        """What each series is expected to read at time ``t`` (level + seasonal profile)."""
        p = self.params
        d = int((t % DAY_S) // (DAY_S / p.day_bins))
        exp = self.level + self.day[:, d]
        if p.week_bins:
            exp = exp + self.week[:, int((t % WEEK_S) // (WEEK_S / p.week_bins))]
        return exp

    def _roll_envelopes(self, d: int, w: int) -> None:
        # Leaving a bin: fold this visit's extremes into it, fading what earlier visits saw.
        # A point is judged against earlier visits only, so a long anomaly cannot hide itself.
        keep = self.params.envelope_keep
        old_d, old_w = int(self.bins_at[0]), int(self.bins_at[1])
        if old_d != d:
            if old_d >= 0:
                self.day_hi[:, old_d] = np.maximum(keep * self.day_hi[:, old_d], self.visit[0])
                self.day_lo[:, old_d] = np.minimum(keep * self.day_lo[:, old_d], self.visit[1])
            self.visit[0:2] = 0.0
            self.bins_at[0] = d
        if old_w != w:
            if old_w >= 0:
                self.week_hi[:, old_w] = np.maximum(keep * self.week_hi[:, old_w], self.visit[2])
                self.week_lo[:, old_w] = np.minimum(keep * self.week_lo[:, old_w], self.visit[3])
            self.visit[2:4] = 0.0
            self.bins_at[1] = w

    def step(self, t: float, x: np.ndarray) -> Step:
        """Judge the points ``x`` (one per series, NaN = missing) at time ``t``, then learn them.

        Missing points are skipped: they neither detect nor change the state.
        """
        p = self.params
        x = np.asarray(x, dtype=float)
        ok = np.isfinite(x)
        d = int((t % DAY_S) // (DAY_S / p.day_bins))
        w = int((t % WEEK_S) // (WEEK_S / p.week_bins)) if p.week_bins else 0
        first = ok & (self.count == 0)
        if first.any():
            self.level[first] = x[first]
        xs = np.where(ok, x, self.level)
        season = self.day[:, d] + (self.week[:, w] if p.week_bins else 0.0)
        resid = xs - self.level - season
        # Until init_points the scale is the mean absolute step, so a series starts calibrated.
        has_prev = ok & ~np.isnan(self.prev)
        n_steps = np.maximum(self.count - 1, 0) + has_prev
        step_abs = np.where(has_prev, np.abs(xs - np.where(has_prev, self.prev, xs)), 0.0)
        self.abs_step = np.where(has_prev, self.abs_step + (step_abs - self.abs_step)
                                 / np.maximum(n_steps, 1), self.abs_step)
        initial = self.count < p.init_points
        floor = p.scale_floor * np.abs(self.level) + 1e-9
        self.scale = np.where(ok & initial, np.maximum(self.abs_step, floor), self.scale)
        scale = np.maximum(self.scale, floor)
        z = resid / scale
        surprise = np.abs(z)
        self.smoothed = np.where(ok, self.smoothed + p.smooth * (surprise - self.smoothed),
                                 self.smoothed)
        strength = self.smoothed / np.maximum(p.ratio * self.peak, p.min_surprise)
        # The seasonal envelope: how far this bin strayed on earlier days (and weeks). The
        # fleet combiner treats a detection inside it as a recurring, benign event.
        excursion = xs - self.level
        self._roll_envelopes(d, w)
        hi = np.maximum(self.day_hi[:, d], self.week_hi[:, w])
        lo = np.minimum(self.day_lo[:, d], self.week_lo[:, w])
        seasonal = ((excursion <= p.envelope_margin * hi + p.min_surprise * scale)
                    & (excursion >= p.envelope_margin * lo - p.min_surprise * scale))
        detected = (ok & (strength >= 1.0) & (self.count >= p.warmup_points)
                    & (self.count - self.last_detection > p.quiet_points))
        self.last_detection = np.where(detected, self.count, self.last_detection)
        self.peak = np.where(ok, np.maximum(self.peak * math.exp(-1.0 / p.memory_points),
                                            self.smoothed), self.peak)
        # Learn: clipped residuals move the level, the seasonal bins and the scale.
        n1 = self.count + 1.0
        bound = p.clip * scale
        clipped = np.clip(resid, -bound, bound)
        level_rate = np.maximum(p.level_rate, 1.0 / n1)
        self.level = np.where(ok, self.level + level_rate * clipped, self.level)
        day_resid = np.clip(xs - self.level - self.day[:, d], -bound, bound)
        self.day[:, d] = np.where(ok, self.day[:, d] + p.season_rate * day_resid, self.day[:, d])
        if p.week_bins:
            week_resid = np.clip(xs - self.level - self.day[:, d] - self.week[:, w],
                                 -bound, bound)
            self.week[:, w] = np.where(ok, self.week[:, w] + p.week_rate * week_resid,
                                       self.week[:, w])
        learn = ok & ~initial
        scale_rate = np.maximum(p.scale_rate, 1.0 / n1)
        self.scale = np.where(learn, self.scale + scale_rate
                              * (np.minimum(np.abs(resid), bound + floor) - self.scale),
                              self.scale)
        ex = np.where(ok, excursion, 0.0)
        np.maximum(self.visit[0], ex, out=self.visit[0])
        np.minimum(self.visit[1], ex, out=self.visit[1])
        np.maximum(self.visit[2], ex, out=self.visit[2])
        np.minimum(self.visit[3], ex, out=self.visit[3])
        self.prev = np.where(ok, xs, self.prev)
        self.count = self.count + ok
        return Step(np.where(ok, strength, 0.0), detected, np.where(ok, z, 0.0),
                    ~ok | seasonal)


def anomaly_score(strength: np.ndarray, detected: np.ndarray) -> np.ndarray:
    """Map strength to 0..1 so that ``score > 0.5`` exactly when the point is a detection."""
    strength = np.asarray(strength, dtype=float)
    high = 0.5 + 0.5 * np.tanh(np.maximum(strength - 1.0, 0.0) + 0.01)
    low = 0.5 * np.clip(strength, 0.0, 1.0) * 0.98
    return np.where(detected, high, low)


def score_series(times: np.ndarray, values: np.ndarray,
                 params: BaselineParams | None = None,
                 state: BaselineState | None = None,
                 ) -> tuple[np.ndarray, np.ndarray, BaselineState]:
    """Run rows ``values`` (shape (rows,) or (rows, series)) through the baseline, causally.

    Returns per-row ``(anomaly_score, is_anomaly)`` of the same shape as ``values`` and the final
    state (the trained model). Row ``i`` is judged only from rows before it.
    """
    vals = np.asarray(values, dtype=float)
    one = vals.ndim == 1
    vals = vals.reshape(len(vals), -1)
    st = state or BaselineState.new(vals.shape[1], params)
    scores = np.zeros(vals.shape)
    flags = np.zeros(vals.shape, dtype=bool)
    for i, t in enumerate(np.asarray(times, dtype=float)):
        step = st.step(float(t), vals[i])
        scores[i] = anomaly_score(step.strength, step.detected)
        flags[i] = step.detected
    if one:
        return scores[:, 0], flags[:, 0], st
    return scores, flags, st
