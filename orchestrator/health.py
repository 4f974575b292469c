"""selfheal's own health for Prometheus: a node_exporter textfile written after each sweep.

It holds the same KPIs as ``selfheal serve``'s /metrics (``orchestrator.kpi``), for cron mode.
Called by ``selfheal sweep`` after every sweep when ``health.textfile_path`` is set (point it at a
``*.prom`` file in node_exporter's ``--collector.textfile.directory``). The file is written to a
temporary name and renamed, so node_exporter never reads half of it. Writing it must never stop
the sweep: ``record_sweep`` logs a failure and returns.

The last successful sweep time outlives the process (a sweep from cron is one process per
sweep): when the metrics source did not answer, the previous file's value is carried over.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator.kpi import Kpis, families

if TYPE_CHECKING:
    from orchestrator.engine import SweepReport
    from orchestrator.store.db import Store

log = logging.getLogger(__name__)

LAST_SUCCESS = "selfheal_last_successful_sweep_timestamp_seconds"
_LAST_SUCCESS_LINE = re.compile(rf"^{LAST_SUCCESS} (\S+)$", re.MULTILINE)


@dataclass(frozen=True)
class SweepHealth:
    """What one sweep says about selfheal itself, with the KPIs from the store."""

    started_at: float
    finished_at: float
    source_answered: bool  # the metrics source answered: the sweep saw the fleet
    kpis: Kpis


def record_sweep(path: Path | None, report: SweepReport, store: Store) -> None:
    """Write the health file for this sweep; never raises (a failure is logged)."""
    if path is None or report.dry_run:  # a preview is not the controller at work
        return
    try:
        write_textfile(path, SweepHealth(
            started_at=report.started_at, finished_at=report.finished_at,
            source_answered=report.source_error is None, kpis=Kpis.from_store(store)))
    except Exception as exc:  # the sweep's work is done; a health file must not undo it
        log.warning("health textfile not written", extra={
            "path": str(path), "error": f"{type(exc).__name__}: {exc}"})


def write_textfile(path: Path, health: SweepHealth) -> None:
    """Atomically replace ``path`` with the metrics for ``health``; OSError if it cannot."""
    from prometheus_client import CollectorRegistry, write_to_textfile

    last_success = health.finished_at if health.source_answered else previous_success(path)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Snapshot(health, last_success))
    write_to_textfile(str(path), registry)


def previous_success(path: Path) -> float | None:
    """The last successful sweep time a previous write left in ``path``, if any."""
    try:
        match = _LAST_SUCCESS_LINE.search(path.read_text())
        return float(match.group(1)) if match else None
    except (OSError, ValueError):
        return None


def sweep_families(started_at: float, finished_at: float,
                   last_success: float | None) -> Iterator[Any]:
    """The last sweep's times as metric families (the textfile here, /metrics in serve)."""
    from prometheus_client.core import GaugeMetricFamily

    yield GaugeMetricFamily("selfheal_last_sweep_timestamp_seconds",
                            "when the last sweep ended, answered or not", finished_at)
    if last_success is not None:
        yield GaugeMetricFamily(LAST_SUCCESS, "when the last sweep whose metrics source "
                                "answered ended", last_success)
    yield GaugeMetricFamily("selfheal_sweep_duration_seconds", "how long the last sweep took",
                            max(0.0, finished_at - started_at))


class _Snapshot:
    """A one-shot collector over plain values (the registry calls ``collect``)."""

    def __init__(self, health: SweepHealth, last_success: float | None) -> None:
        self.health = health
        self.last_success = last_success

    def collect(self) -> Iterator[Any]:
        h = self.health
        yield from sweep_families(h.started_at, h.finished_at, self.last_success)
        yield from families(h.kpis)
