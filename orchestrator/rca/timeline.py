"""The metric timeline of one host: one range query per signal, downsampled for a prompt.

Called by ``rca.stage``. Each signal's PromQL is queried once over the window at ``window /
points`` steps, and the series whose ``instance`` label names the host are kept (the same
mapping the sweep uses, ``sources.prometheus.instance_host``; narrowing the query with ``up``
would miss series whose instance the exporter sets itself, ``honor_labels``). Each series (one
per subject: a unit, a mount point) is kept as rounded values, oldest first. A signal that fails
to answer is left out and named in the notes; the report never waits on it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from orchestrator.core.signals import Signal
from orchestrator.errors import SourceUnavailable
from orchestrator.rca import mask
from orchestrator.rca.context import Series
from orchestrator.sources.prometheus import RangeFn, instance_host

MAX_SERIES = 4  # per signal: the subjects of one host (units, mounts)


def _round(value: str) -> float | None:
    number = float(value)
    if not math.isfinite(number):
        return None
    return float(f"{number:.4g}")


def timeline(query_range: RangeFn, signals: Iterable[Signal], address: str, now: float,
             window_s: float, points: int, instance_label: str = "instance"
             ) -> tuple[tuple[Series, ...], tuple[str, ...]]:
    """(series per signal and subject, notes on the signals that did not answer)."""
    step = max(1, int(window_s // points))
    out: list[Series] = []
    notes: list[str] = []
    for signal in signals:
        try:
            result = query_range(signal.promql, now - window_s, now, f"{step}s")
        except SourceUnavailable as exc:
            notes.append(f"timeline of {signal.name} unavailable: {mask.template(str(exc))}")
            continue
        mine = [r for r in result if instance_host(
            str((r.get("metric") or {}).get(instance_label, ""))) == address]
        for series in mine[:MAX_SERIES]:
            by_time = {int((float(t) - (now - window_s)) // step): _round(v)
                       for t, v in series.get("values") or []}
            values = tuple(by_time.get(i) for i in range(points + 1))
            labels = {str(k): str(v) for k, v in (series.get("metric") or {}).items()}
            subject = ",".join(f"{k}={mask.label(labels.get(k, ''))}" for k in signal.subject)
            out.append(Series(signal.name, signal.firing_when, float(step), values, subject))
    return tuple(out), tuple(notes)
