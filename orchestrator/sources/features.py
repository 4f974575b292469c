"""Features for detection: Prometheus range queries into one pandas frame per signal.

Called by ``selfheal baseline train`` (the history window) and by the sweep (the recent window).
One range query per signal for the whole fleet, with the PromQL from ``rules/detection.yml``; the
query function is passed in (``prometheus_api_client.PrometheusConnect.custom_query_range`` or a
test's own), so this module opens no connection. Each frame has one row per step (UTC epoch
seconds) and one column per host; derived signals (disk fill rate) are computed here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from orchestrator.core.detect.rules import DetectionRules
from orchestrator.sources.prometheus import instance_host

RangeQueryFn = Callable[..., list[dict[str, Any]]]


def series_frame(result: Iterable[Mapping[str, Any]], index: np.ndarray,
                 label: str = "instance",
                 host_of: Callable[[str], str | None] = instance_host) -> pd.DataFrame:
    """One range-query result (``[{"metric": {...}, "values": [[ts, "v"], ...]}]``) as a frame.

    Series whose label is not a plain host[:port] are dropped; several series for one host (e.g.
    two mount points) are summed. Samples are aligned to ``index`` (nearest earlier step).
    """
    columns: dict[str, pd.Series] = {}
    for series in result:
        host = host_of(str(series.get("metric", {}).get(label, "")))
        if host is None:
            continue
        pairs = series.get("values") or []
        if not pairs:
            continue
        ts = np.array([float(p[0]) for p in pairs])
        vals = pd.to_numeric(pd.Series([p[1] for p in pairs]), errors="coerce").to_numpy(float)
        vals = np.where(np.isfinite(vals), vals, np.nan)  # +Inf would poison the learned state
        s = pd.Series(vals, index=ts).sort_index()
        s = s[~s.index.duplicated(keep="last")]
        aligned = s.reindex(index, method="ffill", tolerance=float(np.median(np.diff(index)))
                            if len(index) > 1 else None)
        columns[host] = columns[host].add(aligned, fill_value=0) if host in columns else aligned
    return pd.DataFrame(columns, index=pd.Index(index, name="time"))


def fleet_features(query_range: RangeQueryFn, rules: DetectionRules, start: float, end: float,
                   step_s: float = 60.0, label: str = "instance") -> dict[str, pd.DataFrame]:
    """Signal -> frame (time x host) for every signal and derived signal of ``rules``.

    ``query_range(promql, start_time, end_time, step)`` is called once per signal.
    """
    index = np.arange(start, end + 1e-9, step_s)
    frames: dict[str, pd.DataFrame] = {}
    for name, rule in rules.signals.items():
        result = query_range(rule.promql, start, end, f"{int(step_s)}s")
        frames[name] = series_frame(result, index, label)
    for name, d in rules.derived.items():
        src = frames[d.source]
        lag = max(1, round(1800.0 / step_s))
        frames[name] = (src.shift(lag) - src) * 3600.0 / (lag * step_s)
    return frames


def as_arrays(frames: Mapping[str, pd.DataFrame], hosts: Iterable[str]
              ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Times and signal -> (rows x hosts) arrays in ``hosts`` order (NaN where a host is absent)."""
    hosts = list(hosts)
    times = next(iter(frames.values())).index.to_numpy(float) if frames else np.array([])
    return times, {s: f.reindex(columns=hosts).to_numpy(float) for s, f in frames.items()}
