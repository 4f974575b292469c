"""``selfheal remediate HOST REMEDIATION``: run one catalog entry by hand (``--check`` to try)."""

from __future__ import annotations

from contextlib import nullcontext

import typer

from orchestrator.cli.common import (
    ERROR,
    JSON_OPTION,
    OK,
    State,
    console,
    emit_json,
    handle_errors,
    to_jsonable,
)
from orchestrator.core.plan import build_plan
from orchestrator.errors import TargetError
from orchestrator.models import Diagnosis, OutcomeStatus
from orchestrator.wiring import controller_for


@handle_errors
def remediate(
    host: str = typer.Argument(..., help="inventory host name"),
    remediation: str = typer.Argument(..., help="catalog entry from rules/remediations.yml"),
    param: list[str] = typer.Option([], "--param", "-p", help="LABEL=VALUE feeding the entry's "
                                    "parameters (checked against their patterns)"),
    check: bool = typer.Option(False, "--check", help="Ansible check mode: change nothing"),
    json_output: bool = JSON_OPTION,
) -> None:
    """Run a catalog remediation on one host, audited. Exit 0 succeeded, 2 failed or refused."""
    controller = controller_for(State.settings())
    entry = controller.rules.catalog.get(remediation)
    if entry is None:
        raise TargetError(f"'{remediation}' is not in the catalog; known: "
                          f"{sorted(controller.rules.catalog.remediations)}")
    labels = {}
    for item in param:
        key, sep, value = item.partition("=")
        if not sep:
            raise TargetError(f"--param {item!r}: write LABEL=VALUE")
        labels[key] = value
    targets = controller.inventory.resolve([host])
    address = controller.inventory.hosts[host].prometheus_host
    labels.setdefault("instance", address)
    plan = build_plan(Diagnosis(host, "manual", 1.0, ("requested by hand",), (remediation,),
                                "human", labels), entry, targets)
    controller.store.audit("manual.remediate", f"{host}/{remediation}",
                           {"check": check, "params": dict(plan.params)})
    with console.status(f"running {remediation} on {host}") if not json_output else nullcontext():
        outcome = controller.executor.run(plan, "remediate", check=check)
    controller.store.record_run(None, host, remediation, "remediate", outcome)
    if json_output:
        emit_json(to_jsonable(outcome))
    else:
        console.print(f"{remediation} on {host}: {outcome.status.value} "
                      f"({outcome.seconds:.1f}s{', check mode' if check else ''})")
        for m in outcome.messages:
            console.print(f"  {m}", highlight=False)
    raise typer.Exit(OK if outcome.status is OutcomeStatus.SUCCEEDED else ERROR)

