"""``selfheal remediate HOST REMEDIATION``: run one catalog entry by hand (``--check`` to try).

The run passes the guardrails (see ``orchestrator.manual``) unless ``--force --reason TEXT``;
every request is audited with the operator's name (``--by``, else the OS user).
"""

from __future__ import annotations

from contextlib import nullcontext

import typer

from orchestrator.cli.common import (
    ERROR,
    JSON_OPTION,
    NEEDS_HUMAN,
    OK,
    State,
    console,
    emit_json,
    handle_errors,
    to_jsonable,
)
from orchestrator.errors import TargetError
from orchestrator.manual import ManualRequest, os_user, run_by_hand
from orchestrator.models import OutcomeStatus, Verdict
from orchestrator.wiring import controller_for


@handle_errors
def remediate(
    host: str = typer.Argument(..., help="inventory host name"),
    remediation: str = typer.Argument(..., help="catalog entry from rules/remediations.yml"),
    param: list[str] = typer.Option([], "--param", "-p", help="NAME=VALUE: a parameter of the "
                                    "entry (e.g. service_restart_health_url), or a label "
                                    "feeding one (e.g. unit, instance=HOST:PORT); every value "
                                    "is checked against its pattern. Unset ones come from the "
                                    "host's firing series"),
    check: bool = typer.Option(False, "--check", help="Ansible check mode: change nothing"),
    by: str | None = typer.Option(None, "--by", help="who runs it (default: the OS user); "
                                  "an approver in policy.yml may run risk tier 3"),
    force: bool = typer.Option(False, "--force", help="run although the guardrails say no "
                               "(never for a protected unit); needs --reason"),
    reason: str | None = typer.Option(None, "--reason", help="why --force (audited)"),
    json_output: bool = JSON_OPTION,
) -> None:
    """Run a catalog remediation on one host, guarded and audited. Exit 0 succeeded, 1 refused
    by the guardrails, 2 bad input or the run failed."""
    values: dict[str, str] = {}
    for item in param:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise TargetError(f"--param {item!r}: write NAME=VALUE")
        values[key] = value
    controller = controller_for(State.settings())
    request = ManualRequest(host, remediation, values, check, by or os_user(), force, reason)
    with console.status(f"{remediation} on {host}") if not json_output else nullcontext():
        result = run_by_hand(controller, request)
    outcome = result.outcome
    if json_output:
        emit_json({"host": host, "remediation": remediation, "by": request.by,
                   "params": dict(result.plan.params), "verdict": result.decision.verdict.value,
                   "reasons": list(result.decision.reasons), "forced": result.forced,
                   "outcome": None if outcome is None else to_jsonable(outcome)})
    elif outcome is None:
        console.print(f"[red]refused:[/] {remediation} on {host} "
                      f"({result.decision.verdict.value})", highlight=False)
        for why in result.decision.reasons:
            console.print(f"  {why}", highlight=False)
        if result.decision.verdict is not Verdict.REFUSE:
            console.print("  to override: --force --reason TEXT (audited)", highlight=False)
    else:
        forced = f", forced past: {'; '.join(result.decision.reasons)}" if result.forced else ""
        console.print(f"{remediation} on {host}: {outcome.status.value} "
                      f"({outcome.seconds:.1f}s{', check mode' if check else ''}{forced})",
                      highlight=False)
        for m in outcome.messages:
            console.print(f"  {m}", highlight=False)
    if outcome is None:
        raise typer.Exit(NEEDS_HUMAN)
    raise typer.Exit(OK if outcome.status is OutcomeStatus.SUCCEEDED else ERROR)
