"""``selfheal incidents``: list incidents, show one with its transitions, approve one."""

from __future__ import annotations

import time

import typer

from orchestrator.cli.common import (
    JSON_OPTION,
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

app = typer.Typer(help="Incidents: list, show, approve.", no_args_is_help=False)


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
    raise typer.Exit(OK)


@app.command("approve")
@handle_errors
def approve(incident_id: int = typer.Argument(...),
            by: str = typer.Option(..., "--by", help="who approves (must be in policy approvers "
                                   "when that list is set)"),
            json_output: bool = JSON_OPTION) -> None:
    """Approve an incident awaiting approval; the next sweep runs its remediation."""
    from orchestrator.wiring import rules_for

    settings = State.settings()
    approvers = rules_for(settings).policy.approvers
    if approvers and by not in approvers:
        raise TargetError(f"{by!r} is not an approver in policy.yml (approvers: {list(approvers)})")
    store = store_for(settings)
    incident = store.get(incident_id)
    if incident is None or incident.state is not IncidentState.AWAITING_APPROVAL:
        raise TargetError(f"incident {incident_id} is not awaiting approval")
    store.approve(incident, by, time.time())
    if json_output:
        emit_json({"incident": incident_id, "approved_by": by})
    else:
        console.print(f"incident {incident_id} approved by {by}; the next sweep runs it")
    raise typer.Exit(OK)
