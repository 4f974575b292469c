"""The metric timeline of one host: one range query per signal, downsampled for a prompt.

Called by ``rca.stage``. Each signal's fleet-wide PromQL is narrowed to the host's targets with
``and on (instance) up{instance=~"<address>(:port)?"}`` (the signals aggregate ``by
(instance)``), queried over the window at ``window / points`` steps, and each series (one per
subject: a unit, a mount point) is kept as rounded values, oldest first. A signal that fails to
answer is left out and named in the notes; the report never waits on it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable

from orchestrator.core.signals import Signal
from orchestrator.errors import SourceUnavailable
from orchestrator.rca import mask
from orchestrator.rca.context import Series
from orchestrator.sources.prometheus import RangeFn

MAX_SERIES = 4  # per signal: the subjects of one host (units, mounts)


def host_query(signal: Signal, address: str, instance_label: str = "instance") -> str:
    """The signal's PromQL narrowed to one host's targets (the address is regex-escaped)."""
    pattern = re.escape(address).replace("\\", "\\\\")
    return (f"({signal.promql}) and on ({instance_label}) "
            f'up{{{instance_label}=~"{pattern}(:[0-9]+)?"}}')


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
            result = query_range(host_query(signal, address, instance_label), now - window_s,
                                 now, f"{step}s")
        except SourceUnavailable as exc:
            notes.append(f"timeline of {signal.name} unavailable: {mask.template(str(exc))}")
            continue
        for series in result[:MAX_SERIES]:
            by_time = {int((float(t) - (now - window_s)) // step): _round(v)
                       for t, v in series.get("values") or []}
            values = tuple(by_time.get(i) for i in range(points + 1))
            labels = {str(k): str(v) for k, v in (series.get("metric") or {}).items()}
            subject = ",".join(f"{k}={mask.label(labels.get(k, ''))}" for k in signal.subject)
            out.append(Series(signal.name, signal.firing_when, float(step), values, subject))
    return tuple(out), tuple(notes)
