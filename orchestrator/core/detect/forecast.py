"""Time to exhaustion for 0..1 "available" signals: a robust cousin of PromQL ``predict_linear``.

Called by ``fleet.FleetDetector`` every sweep for the signals marked ``exhaustion: true`` in
``rules/detection.yml``, vectorised over hosts. The window is cut in thirds; the trend is the
change between the medians of the first and last third, so a short spike (a backup, a restart)
moves it little, and a finding needs the three medians to decline in order (a steady trend, not a
step that already happened).
"""

from __future__ import annotations

import warnings

import numpy as np

from orchestrator.core.detect.rules import ForecastParams


def time_to_exhaustion(times: np.ndarray, values: np.ndarray, now: float,
                       params: ForecastParams | None = None) -> np.ndarray:
    """Seconds until each row of ``values`` (hosts x window, NaN = missing) reaches 0.

    ``times`` is the window's sample times (shape (window,)). Rows without a steady, significant
    decline return ``inf``; a row already at or below 0 returns 0.
    """
    p = params or ForecastParams()
    t = np.asarray(times, dtype=float)
    v = np.asarray(values, dtype=float)
    keep = t >= now - p.window_s
    t, v = t[keep], v[:, keep]
    hosts = v.shape[0]
    out = np.full(hosts, np.inf)
    if len(t) < max(p.min_points, 6) or t[-1] - t[0] < 0.5 * p.window_s:
        return out
    third = len(t) // 3
    parts = [slice(0, third), slice(third, len(t) - third), slice(len(t) - third, len(t))]
    with warnings.catch_warnings():  # an all-missing row is simply "no trend"
        warnings.simplefilter("ignore", RuntimeWarning)
        m = [np.nanmedian(v[:, s], axis=1) for s in parts]
    tm = [float(np.median(t[s])) for s in parts]
    slope = (m[2] - m[0]) / (tm[2] - tm[0])
    steady = (m[0] > m[1]) & (m[1] > m[2]) & (m[0] - m[2] >= p.min_drop) & (slope < 0)
    current = m[2] + slope * (now - tm[2])
    with np.errstate(divide="ignore", invalid="ignore"):
        tte = np.where(current <= 0, 0.0, current / -slope)
    return np.where(steady & ~np.isnan(tte), tte, out)


def exhaustion_score(tte: np.ndarray, horizon_s: float) -> np.ndarray:
    """0..1: 0 beyond the horizon, 0.6 at the horizon, rising to 1 as exhaustion nears."""
    tte = np.asarray(tte, dtype=float)
    inside = tte <= horizon_s
    return np.where(inside, 0.6 + 0.4 * (1.0 - np.clip(tte / horizon_s, 0.0, 1.0)), 0.0)
