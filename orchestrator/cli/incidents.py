"""``selfheal incidents``: list incidents, show one with its transitions, approve or retry one."""

from __future__ import annotations

import time
from contextlib import nullcontext
from typing import Any

import typer
from rich.markup import escape

from orchestrator.cli.common import (
    JSON_OPTION,
    NEEDS_HUMAN,
    OK,
    State,
    console,
    emit_json,
    handle_errors,
    to_jsonable,
    when,
)
from orchestrator.cli.report import incidents_table
from orchestrator.errors import TargetError
from orchestrator.models import IncidentState
from orchestrator.wiring import store_for

app = typer.Typer(help="Incidents: list, show, approve, retry, mark, stats.",
                  no_args_is_help=False)


@app.callback(invoke_without_command=True)
def _default(ctx: typer.Context, json_output: bool = JSON_OPTION) -> None:
    if ctx.invoked_subcommand is None:
        list_(limit=50, host=None, json_output=json_output)


@app.command("list")
@handle_errors
def list_(limit: int = typer.Option(50, min=1), host: str | None = typer.Option(None),
          json_output: bool = JSON_OPTION) -> None:
    """The newest incidents first."""
    incidents = store_for(State.settings()).incidents(limit=limit, host=host)
    if json_output:
        emit_json({"incidents": [to_jsonable(i) for i in incidents]})
    else:
        console.print(incidents_table(incidents))
    raise typer.Exit(OK)


@app.command("show")
@handle_errors
def show(incident_id: int = typer.Argument(...), json_output: bool = JSON_OPTION) -> None:
    """One incident with every transition."""
    store = store_for(State.settings())
    incident = store.get(incident_id)
    if incident is None:
        raise TargetError(f"no incident {incident_id}; see `selfheal incidents list`")
    transitions = store.transitions(incident_id)
    if json_output:
        emit_json({"incident": to_jsonable(incident), "transitions": transitions})
    else:
        console.print(f"[bold]incident {incident.id}[/]: {incident.host} {incident.fault} "
                      f"[{incident.state.value}] remediation={incident.remediation or '-'}")
        for t in transitions:
            console.print(f"  {when(t['at'])}  {t['from'] or '-':>17} -> {t['to']:<17} "
                          f"{t['note']}", highlight=False)
        rca = incident.detail.get("rca")
        if isinstance(rca, dict) and "summary" in rca:  # the root-cause report (docs/rca.md)
            llm = rca.get("llm") or {}
            for line in (f"root cause: {rca.get('root_cause', '')}",
                         f"prevention: {rca.get('prevention', '')}",
                         f"llm: {llm.get('status')}: {llm.get('reason')}"):
                console.print(f"  {escape(line)}", highlight=False)
    raise typer.Exit(OK)


@app.command("approve")
@handle_errors
def approve(incident_id: int = typer.Argument(...),
            by: str = typer.Option(..., "--by", help="who approves (must be listed in "
                                   "policy.yml approvers)"),
            json_output: bool = JSON_OPTION) -> None:
    """Approve the plan of an incident awaiting approval; the next sweep runs exactly that plan
    (a changed plan asks again)."""
    from orchestrator.wiring import rules_for

    settings = State.settings()
    approvers = rules_for(settings).policy.approvers
    if not approvers:
        raise TargetError("no approvers are configured, so nothing can be approved: list who may "
                          "approve in policy.yml, e.g. `approvers: [alice, bob]`")
    if by not in approvers:
        raise TargetError(f"{by!r} is not an approver in policy.yml (approvers: "
                          f"{list(approvers)}); ask one of them, or add {by!r} to the list")
    store = store_for(settings)
    incident = store.get(incident_id)
    if incident is None or incident.state is not IncidentState.AWAITING_APPROVAL:
        raise TargetError(f"incident {incident_id} is not awaiting approval")
    if not incident.detail.get("plan_digest"):
        raise TargetError(f"incident {incident_id} has no recorded plan to approve; wait for "
                          "the next sweep to plan it")
    from orchestrator.manual import os_user

    store.approve(incident, by, time.time(), os_user())
    if json_output:
        emit_json({"incident": incident_id, "approved_by": by,
                   "plan_digest": incident.detail["plan_digest"],
                   "remediation": incident.remediation,
                   "params": dict(incident.detail.get("params", {}))})
    else:
        console.print(f"incident {incident_id} approved by {by}: {incident.remediation} "
                      f"{dict(incident.detail.get('params', {}))}; the next sweep runs it",
                      highlight=False)
    raise typer.Exit(OK)


@app.command("retry")
@handle_errors
def retry(incident_id: int = typer.Argument(...),
          by: str | None = typer.Option(None, "--by", help="who asks (default: the OS user)"),
          json_output: bool = JSON_OPTION) -> None:
    """Re-plan an escalated, rolled-back or held incident from the fleet as it is now and run it
    through every guardrail. Exit 0 healed (or nothing to do), 1 still needs a human."""
    from orchestrator.manual import os_user
    from orchestrator.wiring import controller_for

    controller = controller_for(State.settings())
    with console.status(f"retrying incident {incident_id}") if not json_output \
            else nullcontext():
        action = controller.retry(incident_id, by or os_user())
    if json_output:
        emit_json({"action": to_jsonable(action)})
    else:
        console.print(f"incident {action.incident_id}: {action.host} {action.fault} -> "
                      f"[bold]{action.state}[/] ({action.verdict})", highlight=False)
        for why in action.reasons:
            console.print(f"  {why}", highlight=False)
    raise typer.Exit(NEEDS_HUMAN if action.needs_human else OK)


@app.command("mark")
@handle_errors
def mark(incident_id: int = typer.Argument(...),
         false_positive: bool = typer.Option(False, "--false-positive",
                                             help="the incident was no fault at all"),
         by: str | None = typer.Option(None, "--by", help="who says so (default: the OS user)"),
         json_output: bool = JSON_OPTION) -> None:
    """Mark an incident as a false positive: it stays in the store and the audit log, and the
    KPIs count it apart (selfheal_false_positives_total, not in the success ratio)."""
    from orchestrator.manual import os_user

    if not false_positive:
        raise TargetError("say what to mark: `selfheal incidents mark ID --false-positive`")
    who = by or os_user()
    incident = store_for(State.settings()).mark_false_positive(incident_id, who, time.time(),
                                                               os_user())
    if json_output:
        emit_json({"incident": incident_id, "false_positive": True, "by": who,
                   "fault": incident.fault, "host": incident.host})
    else:
        console.print(f"incident {incident_id} ({incident.host} {incident.fault}) marked a false "
                      f"positive by {who}", highlight=False)
    raise typer.Exit(OK)


@app.command("stats")
@handle_errors
def stats(json_output: bool = JSON_OPTION) -> None:
    """Per fault, how each remediation did (verified fixes, failures) and the order selfheal
    tries them in (Beta posterior mean, core/learning.py); hosts where the fault came back in
    policy.yml's flapping.recurring_window_s (24 h by default)."""
    from rich.table import Table

    from orchestrator.core.learning import rank
    from orchestrator.wiring import rules_for

    settings = State.settings()
    store = store_for(settings)
    records = store.remediation_records()
    rules = rules_for(settings)
    faults = rules.faults.faults
    window = rules.policy.flapping.recurring_window_s
    since = time.time() - window
    returns: dict[str, dict[str, int]] = {}
    for incident in store.all_incidents():
        if incident.detected_at >= since:
            hosts = returns.setdefault(incident.fault, {})
            hosts[incident.host] = hosts.get(incident.host, 0) + 1
    rows: list[dict[str, Any]] = []
    for name, fault in sorted(faults.items()):
        order = rank(name, fault.remediations, records)
        recurring = {h: n for h, n in sorted(returns.get(name, {}).items()) if n > 1}
        for position, remediation in enumerate(order, start=1):
            record = records.get((name, remediation))
            rows.append({"fault": name, "remediation": remediation, "rank": position,
                         "healed": record.successes if record else 0,
                         "failed": record.failures if record else 0,
                         "score": round(record.score if record else 0.5, 3),
                         "recurring": recurring, "recurring_window_s": window})
    if json_output:
        emit_json({"remediations": rows})
        raise typer.Exit(OK)
    table = Table(title="remediations by fault (tried in rank order)")
    for column in ("fault", "rank", "remediation", "healed", "failed", "score",
                   f"back within {window / 3600:g} h"):
        table.add_column(column)
    for row in rows:
        table.add_row(row["fault"], str(row["rank"]), row["remediation"], str(row["healed"]),
                      str(row["failed"]), f"{row['score']:.2f}",
                      ", ".join(f"{h} x{n}" for h, n in row["recurring"].items()) or "-")
    console.print(table)
    raise typer.Exit(OK)
