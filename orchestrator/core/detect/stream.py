"""The streaming dynamic baseline: one robust, seasonal model per series, vectorised over series.

Called by ``orchestrator.core.detect.fleet`` (the sweep: one new point for every host and signal
at once), by ``orchestrator.cli.detect`` (``selfheal detect-csv``: every row of a file, one series
per value column) and by ``benchmarks/detection.py``. All three use ``BaselineState.step``, so the
offline figures are those of the sweep.

Each series keeps a level, a scale and a daily (and weekly) seasonal profile, all updated with
clipped, exponentially weighted steps, so one outlier moves them little and a spike that recurs at
the same hour of the day (or of the week) becomes part of the normal. A point is judged only from
the state built from earlier points (causal): its surprise ``z = |x - expected| / scale`` is
smoothed on two time scales (fast: short sharp anomalies; slow: sustained shifts), and the series
*detects* when either smoothed surprise is at least as large as anything that time scale has seen
recently (a decaying maximum, raised after each detection so the same anomaly recurring does not
detect again and again), above an absolute floor, outside the warm-up and outside the quiet period
after its previous detection. The detections are therefore sparse, which is what an on-call human
(and the NAB score) rewards. The frozen defaults below are what ``benchmarks/detection.py``'s
candidate grid picks on the NAB tuning subset; the same procedure's leave-one-folder-out figure is
the one to trust. They are never tuned per file or per host.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, NamedTuple

import numpy as np

DAY_S = 86400.0
WEEK_S = 7 * DAY_S


@dataclass(frozen=True)
class BaselineParams:
    """Frozen defaults of the streaming baseline (picked on the NAB tuning subset by the
    procedure ``benchmarks/detection.py`` cross-validates; ``rules/detection.yml``'s
    ``defaults: baseline:`` may override them, for the sweep and ``detect-csv`` alike)."""

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
    smooth: float = 0.3
    """Weight of a new point's surprise in the fast smoothed surprise (short, sharp anomalies)."""
    smooth_slow: float = 0.03
    """Weight of a new point's surprise in the slow smoothed surprise (sustained anomalies)."""
    memory_points: float = 2000.0
    """Time constant (points) of the decaying maximum of past surprise (one per time scale)."""
    ratio: float = 1.0
    """A detection needs a smoothed surprise >= ratio x its decayed past maximum ..."""
    min_surprise: float = 3.0
    """... and the slow one at least this many scales (also the sweep's surprise threshold) ..."""
    min_surprise_fast: float = 4.0
    """... or the fast one at least this many."""
    bump: float = 1.2
    """After a detection the past maxima are raised to this multiple of the detected surprise,
    so the same anomaly recurring (a periodic spike) is not detected again and again."""
    warmup_points: int = 150
    """No detection before this many points of a series."""
    settle_points: int = 150
    """The decaying maxima learn only from this many points on: the model's own surprises while
    its scale and profiles settle would otherwise set a bar a short series never gets under."""
    quiet_points: int = 100
    """After a detection, the series stays quiet for this many points."""
    scale_floor: float = 0.001
    """Scale is at least this fraction of |level| (quantised or flat series)."""
    envelope_keep: float = 0.7
    """Seasonal envelope: share of a bin's past excursion kept when the bin comes round again."""
    envelope_margin: float = 1.5
    """A point within this multiple of its bin's past excursion (daily or weekly) is normal."""

    # Every rate and threshold above (not the bin counts) may also be an array with one value per
    # series: the benchmark's cross-validation scores many candidate settings in one pass.

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
    smoothed_slow: np.ndarray
    peak_slow: np.ndarray
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
                   peak=z.copy(), smoothed_slow=z.copy(), peak_slow=z.copy(),
                   last_detection=np.full(series, -(10**12), dtype=np.int64),
                   day_hi=np.zeros((series, p.day_bins)), day_lo=np.zeros((series, p.day_bins)),
                   week_hi=np.zeros((series, max(p.week_bins, 1))),
                   week_lo=np.zeros((series, max(p.week_bins, 1))),
                   visit=np.zeros((4, series)), bins_at=np.array([-1, -1], dtype=np.int64))

    def __setstate__(self, state: dict[str, Any]) -> None:
        # A model pickled before the slow time scale existed starts it from zero.
        for name in ("smoothed_slow", "peak_slow"):
            state.setdefault(name, np.zeros(len(state["level"])))
        self.__dict__.update(state)

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

    def step(self, t: float, x: np.ndarray, learn: np.ndarray | None = None) -> Step:
        """Judge the points ``x`` (one per series, NaN = missing) at time ``t``, then learn them.

        Missing points are skipped: they neither detect nor change the state. ``learn`` (bool
        per series, default all) marks the points the model may learn from; for the others the
        surprise is returned and the excursion recorded in the seasonal envelopes (this hour
        strayed), but they neither detect nor move anything else (training leaves the windows
        the detector flagged out so).
        """
        p = self.params
        x = np.asarray(x, dtype=float)
        seen = np.isfinite(x)
        ok = seen if learn is None else seen & np.asarray(learn, dtype=bool)
        d = int((t % DAY_S) // (DAY_S / p.day_bins))
        w = int((t % WEEK_S) // (WEEK_S / p.week_bins)) if p.week_bins else 0
        first = ok & (self.count == 0)
        if first.any():
            self.level[first] = x[first]
        xs = np.where(seen, x, self.level)
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
        # Two time scales of smoothed surprise: the fast one catches short sharp anomalies, the
        # slow one sustained shifts that the fast one would only see as noise. Each is compared
        # with its own decaying maximum, so a series that is often surprising must surprise more.
        surprise = np.abs(z)
        self.smoothed = np.where(ok, self.smoothed + p.smooth * (surprise - self.smoothed),
                                 self.smoothed)
        self.smoothed_slow = np.where(ok, self.smoothed_slow + p.smooth_slow
                                      * (surprise - self.smoothed_slow), self.smoothed_slow)
        strength = np.maximum(
            self.smoothed / np.maximum(p.ratio * self.peak, p.min_surprise_fast),
            self.smoothed_slow / np.maximum(p.ratio * self.peak_slow, p.min_surprise))
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
        decay = np.exp(-1.0 / np.asarray(p.memory_points, dtype=float))
        settled = ok & (self.count >= p.settle_points)
        self.peak = np.where(settled, np.maximum(self.peak * decay, self.smoothed), self.peak)
        self.peak_slow = np.where(settled, np.maximum(self.peak_slow * decay,
                                                      self.smoothed_slow), self.peak_slow)
        self.peak = np.where(detected, np.maximum(self.peak, p.bump * self.smoothed), self.peak)
        self.peak_slow = np.where(detected, np.maximum(self.peak_slow, p.bump
                                                       * self.smoothed_slow), self.peak_slow)
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
        learning = ok & ~initial
        scale_rate = np.maximum(p.scale_rate, 1.0 / n1)
        self.scale = np.where(learning, self.scale + scale_rate
                              * (np.minimum(np.abs(resid), bound + floor) - self.scale),
                              self.scale)
        ex = np.where(seen, excursion, 0.0)
        np.maximum(self.visit[0], ex, out=self.visit[0])
        np.minimum(self.visit[1], ex, out=self.visit[1])
        np.maximum(self.visit[2], ex, out=self.visit[2])
        np.minimum(self.visit[3], ex, out=self.visit[3])
        self.prev = np.where(ok, xs, self.prev)
        self.count = self.count + ok
        return Step(np.where(seen, strength, 0.0), detected, np.where(seen, z, 0.0),
                    ~seen | seasonal)


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
