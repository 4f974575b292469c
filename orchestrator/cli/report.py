"""Render sweep reports and incidents for people (rich tables) and scripts (JSON)."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from orchestrator.cli.common import to_jsonable, when
from orchestrator.engine import SweepReport
from orchestrator.models import Health, Incident

_COLOUR = {Health.HEALTHY: "green", Health.FIRING: "red", Health.UNKNOWN: "yellow"}


def sweep_json(report: SweepReport) -> dict[str, Any]:
    return {
        "started_at": report.started_at, "finished_at": report.finished_at,
        "dry_run": report.dry_run, "exit_code": report.exit_code,
        "source_error": report.source_error, "refused": list(report.refused),
        "hosts": [{"host": v.host, "health": v.health.value, "notes": list(v.notes),
                   "diagnoses": [to_jsonable(d) for d in v.diagnoses]} for v in report.verdicts],
        "actions": [to_jsonable(a) for a in report.actions],
        "anomalies": None if report.anomalies is None else {
            "model_status": report.anomalies.model_status,
            "fallback": report.anomalies.fallback,
            "findings": [to_jsonable(f) for f in report.anomalies.findings],
            "unknown": [list(pair) for pair in report.anomalies.unknown],
            "notes": list(report.anomalies.notes),
        },
    }


def hosts_table(report: SweepReport) -> Table:
    table = Table(title="fleet", title_justify="left")
    for col in ("host", "health", "diagnosis", "notes"):
        table.add_column(col)
    for v in report.verdicts:
        colour = _COLOUR[v.health]
        table.add_row(v.host, f"[{colour}]{v.health.value}[/]",
                      ", ".join(d.fault + (f" ({d.subject})" if d.subject else "")
                                for d in v.diagnoses) or "-", "; ".join(v.notes) or "")
    return table


def actions_table(report: SweepReport) -> Table:
    table = Table(title="actions", title_justify="left")
    for col in ("host", "fault", "remediation", "verdict", "state", "incident", "why"):
        table.add_column(col)
    for a in report.actions:
        table.add_row(a.host, a.fault + (f" ({a.subject})" if a.subject else ""),
                      a.remediation or "-", a.verdict, a.state,
                      str(a.incident_id or "-"), "; ".join(a.reasons)[:160])
    return table


def anomalies_table(report: SweepReport) -> Table | None:
    if report.anomalies is None or not report.anomalies.findings:
        return None
    table = Table(title="anomalies (advisory; faults.yml decides what is fixed)",
                  title_justify="left")
    for col in ("host", "signal", "detector", "confidence", "evidence"):
        table.add_column(col)
    for f in report.anomalies.findings:
        table.add_row(f.host, f.signal, f.source, f"{f.confidence:.2f}",
                      "; ".join(f.evidence)[:120])
    return table


def incidents_table(incidents: list[Incident]) -> Table:
    table = Table(title="incidents", title_justify="left")
    for col in ("id", "host", "fault", "state", "remediation", "detected", "detected→resolved s"):
        table.add_column(col)
    for i in incidents:
        heal = f"{i.resolved_at - i.detected_at:.1f}" if i.resolved_at else "-"
        table.add_row(str(i.id), i.host, i.fault, i.state.value, i.remediation or "-",
                      when(i.detected_at), heal)
    return table
