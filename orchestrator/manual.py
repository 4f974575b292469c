"""A remediation run by hand (``selfheal remediate HOST NAME``): planned, guarded and audited.

Called by the ``remediate`` command. A human's run passes the same policy as the loop's (mode,
maintenance windows, cooldown, circuit breaker, approval tier) unless the human forces it with a
reason; fleet-wide limits (too much broken, blast radius) are the human's call. A protected unit
is refused even when forced: edit ``protected_units`` in policy.yml to change that. Every request,
refused or run, is audited with the operator's name.
"""

from __future__ import annotations

import logging
import os
import pwd
import re
from collections.abc import Mapping
from dataclasses import dataclass

from orchestrator.core.catalog import Remediation
from orchestrator.core.plan import build_plan
from orchestrator.core.policy import decide
from orchestrator.engine import Controller
from orchestrator.errors import SourceUnavailable, TargetError, UnsafeValueError
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
    """Plan, guard, audit and (when allowed) run one catalog entry on one host; one actor at a
    time with the loop (the controller's lock), so a sweep never judges this run half-done."""
    with controller.exclusive():
        return _run_by_hand(controller, request)


def _run_by_hand(controller: Controller, request: ManualRequest) -> ManualResult:
    entry = controller.rules.catalog.get(request.remediation)
    if entry is None:
        raise TargetError(f"'{request.remediation}' is not in the catalog; known: "
                          f"{sorted(controller.rules.catalog.remediations)}")
    if request.force and not (request.reason or "").strip():
        raise TargetError("--force needs --reason TEXT: say why the guardrails are overridden "
                          "(it goes to the audit log)")
    targets = controller.inventory.resolve([request.host])
    readable = _labels_read(entry)
    unknown = sorted(set(request.values) - set(entry.params) - readable)
    if unknown:
        raise TargetError(f"-p {unknown}: not a parameter of {request.remediation} "
                          f"({sorted(entry.params)}) nor a label one reads ({sorted(readable)})")
    given = {k: v for k, v in request.values.items() if k in entry.params}
    typed_labels = {k: v for k, v in request.values.items() if k not in entry.params}
    # what was typed, seen as the labels it stands for: a typed unit picks the series of
    # that unit, never another unit's (whose health_url would judge the wrong service)
    wanted = {**typed_labels, **{spec.from_label: request.values[name]
                                 for name, spec in entry.params.items()
                                 if spec.from_label is not None and name in request.values}}
    labels = {**_live_labels(controller, request.host, request.remediation, wanted),
              **typed_labels}
    labels.setdefault("instance",
                      controller.inventory.hosts[request.host].prometheus_host)
    try:
        plan = build_plan(Diagnosis(request.host, "manual", 1.0, ("requested by hand",),
                                    (request.remediation,), "human", labels),
                          entry, targets, given)
    except UnsafeValueError as exc:  # e.g. no firing series of that unit to take its port from
        raise UnsafeValueError(f"{exc}; by hand, give the value with -p NAME=VALUE") from exc
    decision = _guard(controller, plan, request)
    # check mode changes nothing: only a refusal (a protected unit) stops it
    allowed = decision.verdict in (Verdict.RUN, Verdict.DRY_RUN) or (
        request.check and decision.verdict is not Verdict.REFUSE)
    forced = (not allowed and request.force and decision.verdict is not Verdict.REFUSE)
    audit = {"by": request.by, "os_user": os_user(), "check": request.check,
             "params": dict(plan.params),
             "verdict": decision.verdict.value, "reasons": list(decision.reasons),
             "forced": forced, "reason": request.reason}
    subject = f"{request.host}/{request.remediation}"
    if not (allowed or forced):
        controller.store.audit("manual.refused", subject, audit)
        log.warning("manual remediation refused", extra={"host": request.host, "by": request.by,
                                                         "reasons": list(decision.reasons)})
        return ManualResult(plan, decision, False, None)
    controller.store.audit("manual.remediate", subject, audit)
    outcome = controller.run_play(plan, "remediate", check=request.check)
    return ManualResult(plan, decision, forced, outcome)


def _labels_read(entry: Remediation) -> set[str]:
    """The labels the entry's parameters are built from (``-p`` may set these too)."""
    labels = {"instance"}
    for spec in entry.params.values():
        if spec.from_label is not None:
            labels.add(spec.from_label)
        if spec.template is not None:
            labels.update(re.findall(r"\{([A-Za-z_][A-Za-z0-9_]*)\}", spec.template))
    return labels


def _account() -> str:
    """The process's user from the password database (not $LOGNAME or $USER, which anyone sets)."""
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:  # no passwd entry (some containers)
        return f"uid:{os.getuid()}"


def _sudo_user() -> str:
    """Who ran sudo: sudo sets SUDO_USER for a root process; from anyone else it is just text."""
    return os.environ.get("SUDO_USER", "") if os.geteuid() == 0 else ""


def _identities() -> set[str]:
    return {_account(), _sudo_user()} - {""}


def os_user() -> str:
    """Who is really at the keyboard (through sudo too), audited beside ``--by``."""
    sudo = _sudo_user()
    return f"{_account()} (sudo from {sudo})" if sudo else _account()


def _guard(controller: Controller, plan: Plan, request: ManualRequest) -> Decision:
    policy = controller.rules.policy
    now = controller.clock()
    state = controller.policy_state(now, broken_hosts=0)
    # the approval tier is passed by who really runs it (the OS user, or who sudo'd), never by
    # a name typed into --by
    approved = bool(_identities() & set(policy.approvers))
    return decide(plan, policy, state, dry_run=request.check, approved=approved, manual=True)


def _live_labels(controller: Controller, host: str, remediation: str,
                 wanted: Mapping[str, str]) -> dict[str, str]:
    """Labels of the host's firing series that this entry fixes and that agree with what was
    typed (``wanted``), so a human need not retype them (the unit, the instance with its port);
    empty when no such series fires or data is missing."""
    try:
        verdicts, _, error = controller.look()
    except SourceUnavailable:
        return {}
    if error is not None:
        return {}
    entry = controller.rules.catalog.get(remediation)
    for verdict in verdicts:
        if verdict.host != host or verdict.health is not Health.FIRING:
            continue
        for diagnosis in verdict.diagnoses:
            labels = diagnosis.labels
            if remediation in diagnosis.remediations and all(
                    labels.get(k) == v for k, v in wanted.items() if k in labels):
                return dict(labels)
        # a fix chosen by hand for a fault a more specific one superseded (a restart where the
        # rules chose a rollback): the firing series of the signal the entry verifies
        verify = entry.verify.signal if entry is not None else ""
        for found in verdict.findings.get(verify, ()):
            labels = found.labels
            if found.health is Health.FIRING and all(
                    labels.get(k) == v for k, v in wanted.items() if k in labels):
                return dict(labels)
    return {}
