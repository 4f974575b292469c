"""``selfheal demo``: boot the lab, crash the demo service on one host, heal it, show the times.

What `make demo` runs. The lab is left running afterwards (``selfheal lab down`` stops it).
"""

from __future__ import annotations

import time

import typer
from rich.table import Table

from orchestrator.cli.common import (
    JSON_OPTION,
    NEEDS_HUMAN,
    OK,
    console,
    emit_json,
    handle_errors,
    to_jsonable,
)
from orchestrator.config import load_settings
from orchestrator.core.policy import decide
from orchestrator.drill import run_drill
from orchestrator.engine import Controller
from orchestrator.errors import TargetError
from orchestrator.models import Plan, Verdict
from orchestrator.wiring import controller_for

SEED_TARGET_S = 3.0  # the seed article's response time for a crashed service


def _rested_host(controller: Controller, fault: str) -> str:
    """vps2, or the first lab host the guardrails would let heal now (cooldown, flapping
    back-off), so a second `make demo` right after the first heals instead of being held."""
    rule = controller.rules.faults.faults.get(fault)
    entry = controller.rules.catalog.get(rule.remediations[0]) if rule and rule.remediations \
        else None
    if entry is None:
        raise TargetError(f"no catalog remediation heals {fault}; see rules/faults.yml")
    now = time.time()
    state = controller.policy_state(now, broken_hosts=1)
    hosts = sorted(controller.inventory.hosts, key=lambda h: (h != "vps2", h))
    waits: list[str] = []
    for candidate in hosts:
        probe = Plan(fault, entry.name, entry.role, (candidate,), {}, entry.risk_tier,
                     entry.cooldown_s, entry.check_first, entry.verify.signal)
        decision = decide(probe, controller.rules.policy, state)
        if decision.verdict is Verdict.RUN:
            return candidate
        waits.append(f"{candidate}: {'; '.join(decision.reasons)}")
    raise TargetError("no lab host may be healed now: " + " | ".join(waits) +
                      "; wait, or pass --host to see the guardrails hold it")


@handle_errors
def demo(host: str | None = typer.Option(None, help="lab host whose service is crashed "
                                          "(default: vps2, else one the guardrails let heal now)"),
         fault: str = typer.Option("service_crash", help="lab fault to inject"),
         json_output: bool = JSON_OPTION) -> None:
    """Run the closed loop once on the lab. Exit 0 healed, 1 not healed, 2 error."""
    from orchestrator import lab

    if not lab.lab_is_up():
        with console.status("booting the lab (the first run builds the image)") as status:
            lab.up(progress=lambda msg, _fraction: status.update(msg))
    paths = lab.lab_paths()
    settings = load_settings(paths.settings_file)
    controller = controller_for(settings)
    host = host or _rested_host(controller, fault)
    controller.inventory.resolve([host])
    with console.status(f"{fault} injected on {host}; selfheal is sweeping every 0.2 s"):
        result = run_drill(controller, fault, host,
                           lambda f, h: lab.inject(f, h).injected_at)
    audit_records = controller.store.verify_audit()
    touched = sorted({run.host for run in controller.store.history(result.injected_at)})
    if json_output:
        emit_json({**to_jsonable(result), "detect_s": result.detect_s,
                   "end_to_end_s": result.end_to_end_s, "audit_records": audit_records,
                   "hosts_remediated": touched})
    else:
        table = Table(title="selfheal demo", title_justify="left")
        for col in ("host", "fault", "remediation", "time to detect", "time to heal",
                    "outcome"):
            table.add_column(col)
        table.add_row(result.host, result.fault, result.remediation or "-",
                      f"{result.detect_s:.1f} s" if result.detect_s is not None else "-",
                      f"{result.end_to_end_s:.1f} s" if result.end_to_end_s is not None else "-",
                      result.state)
        console.print(table)
        console.print(f"seed target for a crashed service: < {SEED_TARGET_S:.0f} s; hosts "
                      f"remediated during the drill: {', '.join(touched) or 'none'}; audit chain "
                      f"intact ({audit_records} records).")
        console.print("see `selfheal incidents list`; stop the lab with `selfheal lab down`.")
    raise typer.Exit(OK if result.healed else NEEDS_HUMAN)
