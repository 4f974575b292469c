"""Range-query results into frames per signal and host, one query per signal."""

from __future__ import annotations

import numpy as np

from orchestrator.config import PROJECT_ROOT
from orchestrator.rules import load_detection
from orchestrator.sources.features import as_arrays, fleet_features, series_frame

RULES = load_detection(PROJECT_ROOT / "rules")


def test_series_frame_maps_instances_and_refuses_odd_labels() -> None:
    result = [
        {"metric": {"instance": "web1:9100"}, "values": [[0, "0.5"], [60, "0.4"], [120, "NaN"]]},
        {"metric": {"instance": "web2"}, "values": [[0, "1"], [120, "2"]]},
        {"metric": {"instance": "$(reboot)"}, "values": [[0, "9"]]},
    ]
    frame = series_frame(result, np.array([0.0, 60.0, 120.0]))
    assert list(frame.columns) == ["web1", "web2"]
    assert frame["web1"].iloc[1] == 0.4 and np.isnan(frame["web1"].iloc[2])
    assert frame["web2"].iloc[1] == 1.0  # carried forward at most one step


def test_one_query_per_signal_and_derived_fill_rate() -> None:
    calls = []

    def query_range(promql, start, end, step):
        calls.append(promql)
        times = np.arange(start, end + 1, 60)
        if "filesystem" in promql:
            return [{"metric": {"instance": "h:9100"},
                     "values": [[t, str(0.5 - 0.01 * (t - start) / 3600)] for t in times]}]
        return [{"metric": {"instance": "h:9100"}, "values": [[t, "1"] for t in times]}]

    frames = fleet_features(query_range, RULES, 0.0, 4 * 3600.0)
    assert len(calls) == len(RULES.signals)
    assert set(frames) == set(RULES.all_signals)
    rate = frames["disk_fill_rate"]["h"].dropna()
    assert np.allclose(rate, 0.01)
    times, arrays = as_arrays(frames, ["h", "missing"])
    assert arrays["cpu"].shape == (len(times), 2) and np.isnan(arrays["cpu"][:, 1]).all()
