"""A remediation run by hand (``selfheal remediate HOST NAME``): planned, guarded and audited.

Called by the ``remediate`` command. A human's run passes the same policy as the loop's (mode,
maintenance windows, cooldown, circuit breaker, approval tier) unless the human forces it with a
reason; fleet-wide limits (too much broken, blast radius) are the human's call. A protected unit
is refused even when forced: edit ``protected_units`` in policy.yml to change that. Every request,
refused or run, is audited with the operator's name.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

from orchestrator.core.plan import build_plan
from orchestrator.core.policy import PolicyState, decide
from orchestrator.engine import Controller
from orchestrator.errors import SourceUnavailable, TargetError
from orchestrator.models import Decision, Diagnosis, Health, Outcome, Plan, Verdict

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ManualRequest:
    """What the operator asked for, as typed."""

    host: str
    remediation: str
    values: Mapping[str, str]  # -p K=V: a parameter of the entry, else a label feeding one
    check: bool
    by: str
    force: bool = False
    reason: str | None = None


@dataclass(frozen=True)
class ManualResult:
    """The plan, the guardrails' decision and, when it ran, the outcome."""

    plan: Plan
    decision: Decision
    forced: bool
    outcome: Outcome | None

    @property
    def ran(self) -> bool:
        return self.outcome is not None


def run_by_hand(controller: Controller, request: ManualRequest) -> ManualResult:
    """Plan, guard, audit and (when allowed) run one catalog entry on one host."""
    entry = controller.rules.catalog.get(request.remediation)
    if entry is None:
        raise TargetError(f"'{request.remediation}' is not in the catalog; known: "
                          f"{sorted(controller.rules.catalog.remediations)}")
    if request.force and not (request.reason or "").strip():
        raise TargetError("--force needs --reason TEXT: say why the guardrails are overridden "
                          "(it goes to the audit log)")
    targets = controller.inventory.resolve([request.host])
    given = {k: v for k, v in request.values.items() if k in entry.params}
    labels = {**_live_labels(controller, request.host, request.remediation),
              **{k: v for k, v in request.values.items() if k not in entry.params}}
    labels.setdefault("instance",
                      controller.inventory.hosts[request.host].prometheus_host)
    plan = build_plan(Diagnosis(request.host, "manual", 1.0, ("requested by hand",),
                                (request.remediation,), "human", labels),
                      entry, targets, given)
    decision = _guard(controller, plan, request)
    allowed = decision.verdict in (Verdict.RUN, Verdict.DRY_RUN)
    forced = (not allowed and request.force and decision.verdict is not Verdict.REFUSE)
    audit = {"by": request.by, "check": request.check, "params": dict(plan.params),
             "verdict": decision.verdict.value, "reasons": list(decision.reasons),
             "forced": forced, "reason": request.reason}
    subject = f"{request.host}/{request.remediation}"
    if not (allowed or forced):
        controller.store.audit("manual.refused", subject, audit)
        log.warning("manual remediation refused", extra={"host": request.host, "by": request.by,
                                                         "reasons": list(decision.reasons)})
        return ManualResult(plan, decision, False, None)
    controller.store.audit("manual.remediate", subject, audit)
    run_id = controller.store.start_run(None, request.host, request.remediation, "remediate",
                                        request.check, controller.clock())
    outcome = controller.executor.run(plan, "remediate", check=request.check)
    controller.store.finish_run(run_id, request.host, request.remediation, "remediate", outcome)
    return ManualResult(plan, decision, forced, outcome)


def _guard(controller: Controller, plan: Plan, request: ManualRequest) -> Decision:
    policy = controller.rules.policy
    now = controller.clock()
    state = PolicyState(now=now, fleet_size=len(controller.inventory.hosts), broken_hosts=0,
                        running=0, history=controller.store.history(
                            now - controller.history_window()))
    return decide(plan, policy, state, dry_run=request.check,
                  approved=request.by in policy.approvers, manual=True)


def _live_labels(controller: Controller, host: str, remediation: str) -> dict[str, str]:
    """Labels of the host's firing series that this entry fixes, so a human need not retype
    them (the unit, the instance with its port); empty when nothing fires or data is missing."""
    try:
        verdicts, _, error = controller.look()
    except SourceUnavailable:
        return {}
    if error is not None:
        return {}
    for verdict in verdicts:
        if verdict.host != host or verdict.health is not Health.FIRING:
            continue
        for diagnosis in verdict.diagnoses:
            if remediation in diagnosis.remediations:
                return dict(diagnosis.labels)
    return {}
