"""``selfheal diagnose HOST``: what selfheal sees on one host, why, and what it would do.

Changes nothing: the root-cause report (``orchestrator.rca``) gathers the host's metric timeline,
its facts through the read-only ``diagnose`` role and similar past incidents, reports by the rules,
then asks the model when ``llm.model`` is set (not with ``--no-llm``).
"""

from __future__ import annotations

import time
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
)
from orchestrator.core.plan import build_plan, first_remediation
from orchestrator.core.policy import decide
from orchestrator.errors import PermanentError
from orchestrator.models import Health
from orchestrator.rca.report import Report
from orchestrator.wiring import controller_for, rca_for


@handle_errors
def diagnose(host: str = typer.Argument(..., help="inventory host name"),
             no_llm: bool = typer.Option(False, "--no-llm", help="rules alone, even when "
                                         "llm.model is set"),
             json_output: bool = JSON_OPTION) -> None:
    """Show one host's signals, diagnosis, root-cause report and the plan selfheal would run.
    Changes nothing."""
    settings = State.settings()
    controller = controller_for(settings)
    controller.inventory.resolve([host])
    # the detectors judge now, on a copy of their state, so the faults that need their opinion
    # (the forecasts) are diagnosed with this point, not only after the next sweep
    anomalies = controller.detect(time.time(), persist=False)
    verdicts, refused, error = controller.look(anomalies.opinions if anomalies else None)
    verdict = next(v for v in verdicts if v.host == host)
    plans: list[dict[str, Any]] = []
    # the store's records and the guardrails' view are the same for every diagnosis: read once
    records = controller.store.remediation_records()
    state = controller.policy_state(
        time.time(), sum(1 for v in verdicts if v.health is Health.FIRING), len(verdicts),
        unknown_hosts=sum(1 for v in verdicts if v.health is Health.UNKNOWN))
    for d in verdict.diagnoses:
        entry = first_remediation(d, controller.rules.catalog, records)
        if entry is None:
            plans.append({"fault": d.fault, "subject": d.subject, "remediation": None,
                          "verdict": "refuse", "reasons": ["no catalog remediation"]})
            continue
        try:
            plan = build_plan(d, entry, (host,))
        except PermanentError as exc:
            plans.append({"fault": d.fault, "subject": d.subject, "remediation": entry.name,
                          "verdict": "refuse", "reasons": [str(exc)]})
            continue
        decision = decide(plan, controller.rules.policy, state)
        plans.append({"fault": d.fault, "subject": d.subject, "remediation": entry.name,
                      "role": plan.role,
                      "params": dict(plan.params), "risk_tier": plan.risk_tier,
                      "verdict": decision.verdict.value, "reasons": list(decision.reasons)})
    anomalies = anomalies if error is None else None
    mine = [f for f in anomalies.findings if f.host == host] if anomalies else []
    stage = rca_for(settings, controller.rules, controller.inventory, controller.executor,
                    controller.store)
    context = stage.gather(verdict, verdict.diagnoses[0] if verdict.diagnoses else None)
    reports = [stage.explain(verdict, d, context, use_llm=not no_llm).report
               for d in (verdict.diagnoses or (None,))]
    code = OK if verdict.health is Health.HEALTHY else NEEDS_HUMAN
    if json_output:
        emit_json({"host": host, "health": verdict.health.value, "notes": list(verdict.notes),
                   "signals": {s: h.value for s, h in verdict.signals.items()},
                   "anomalies": [to_jsonable(f) for f in mine],
                   "detection": anomalies.model_status if anomalies else None,
                   "diagnoses": [to_jsonable(d) for d in verdict.diagnoses], "plans": plans,
                   "source_error": error, "refused": list(refused),
                   "rca": [r.as_data() for r in reports],
                   "llm": {"status": reports[0].llm_status.value,
                           "reason": reports[0].llm_reason},
                   "context": context.as_data()})
    else:
        console.print(f"[bold]{host}[/]: {verdict.health.value}")
        for signal, health in verdict.signals.items():
            console.print(f"  signal {signal}: {health.value}", highlight=False)
        for f in mine:
            console.print(f"  anomaly {f.signal} ({f.source}, confidence {f.confidence:.2f}): "
                          f"{'; '.join(f.evidence)[:160]}", highlight=False)
        if anomalies is not None:
            console.print(f"  detection: {anomalies.model_status}", highlight=False)
        for note in verdict.notes:
            console.print(f"  note: {note}", highlight=False)
        for d in verdict.diagnoses:
            console.print(f"  fault [red]{d.fault}[/]{f' ({d.subject})' if d.subject else ''} "
                          f"(confidence {d.confidence:.2f})")
            for e in d.evidence:
                console.print(f"    evidence: {e}", highlight=False)
        for p in plans:
            subject = f" ({p['subject']})" if p["subject"] else ""
            console.print(f"  would run: {p['remediation']}{subject} -> {p['verdict']} "
                          f"({'; '.join(p['reasons'])})", highlight=False)
        if error:
            console.print(f"  [yellow]unknown:[/] {error}", highlight=False)
        for report in reports:
            _print_report(report)
    raise typer.Exit(code)


def _print_report(report: Report) -> None:
    """The root-cause report for people; the model's words are marked as its own."""
    out = [f"[bold]report[/]: {escape(report.summary)} (confidence {report.confidence:.2f}, "
           f"by {report.diagnosed_by})",
           f"  root cause: {escape(report.root_cause)}"]
    if report.remediation:
        out.append(f"  remediation: {report.remediation} (risk tier {report.risk_tier}"
                   f"{', needs approval' if report.needs_approval else ''})")
    out += [f"    step: {escape(step)}" for step in report.steps]
    if report.prevention:
        out.append(f"  prevention: {escape(report.prevention)}")
    out += [f"    evidence: {escape(e)}" for e in report.evidence]
    if report.model:
        out.append(f"  model says (unverified): {escape(str(report.model.get('root_cause')))}")
    out.append(f"  llm: {report.llm_status.value}: {escape(report.llm_reason)}")
    for line in out:
        console.print(line, highlight=False)
