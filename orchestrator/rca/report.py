"""The root-cause report, rules first: fault summary, root cause, confidence, remediation steps,
prevention, and the evidence used.

Called by ``rca.stage`` (and so by ``selfheal diagnose`` and the sweep). ``rules_report`` needs no
model: the fault and its confidence come from ``faults.yml`` evidence, the cause from the host
facts' hints (an OOM kill, a signal, a deploy, a full disk), the fix from the catalog entry the
rules chose, the prevention from the fault's ``prevention`` text. ``rca.bind`` may later add
the model's words and raise the tier; it never replaces the rules' fault or fix.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from orchestrator.core.plan import build_plan, first_remediation
from orchestrator.errors import PermanentError
from orchestrator.models import Diagnosis
from orchestrator.rca import mask
from orchestrator.rca.context import Context
from orchestrator.rules import Rules

# Advice added to the fault's own prevention text when a hint shows the matching cause.
_ADVICE = (
    ("the OOM killer acted",
     "Cap the service's memory (MemoryMax= in its unit) and find what grows."),
    ("% full", "Rotate and compress logs by size (logrotate maxsize), alert on disk fill rate."),
    ("a deploy", "Watch the service for an hour after each deploy and roll back on regressions."),
    ("package changes", "Review upgrades before they reach every host (a canary group first)."),
)


class LlmStatus(StrEnum):
    """What the model step did: its answer used, rejected, failed, or no model at all."""

    USED = "used"
    REJECTED = "rejected"
    ERROR = "error"
    OFF = "off"


@dataclass(frozen=True)
class Report:
    """One diagnosis explained; ``fault`` None: the rules see no fault on the host."""

    host: str
    fault: str | None
    subject: str
    summary: str
    root_cause: str
    confidence: float
    evidence: tuple[str, ...]
    remediation: str | None
    params: Mapping[str, str]
    risk_tier: int | None
    steps: tuple[str, ...]
    prevention: str
    diagnosed_by: str = "rules"
    llm_status: LlmStatus = LlmStatus.OFF
    llm_reason: str = "no model configured (llm.model): rules alone"
    needs_approval: bool = False
    model: Mapping[str, Any] | None = field(default=None)  # the model's checked answer

    def as_data(self) -> dict[str, Any]:
        data = {k: v for k, v in self.__dict__.items() if k not in ("llm_status", "llm_reason")}
        data["params"] = dict(self.params)
        data["evidence"] = list(self.evidence)
        data["steps"] = list(self.steps)
        data["llm"] = {"status": self.llm_status.value, "reason": self.llm_reason}
        return data


def rules_report(context: Context, diagnosis: Diagnosis | None, rules: Rules) -> Report:
    """The report the rules alone give (no model)."""
    hints = context.facts.hints
    facts_note = ("" if context.facts.status == "ok"
                  else f" (host facts {context.facts.status}: {context.facts.reason})")
    if diagnosis is None:
        return _no_fault(context, facts_note)
    fault = rules.faults.faults[diagnosis.fault]
    where = f" ({diagnosis.subject})" if diagnosis.subject else ""
    cause = f"{fault.description.rstrip('.')}{where}."
    cause += (" What the host shows: " + "; ".join(hints) + "." if hints
              else " The host facts show no further cause" + (facts_note or ".") )
    evidence = (*(f"rules: {mask.template(e, 200)}" for e in diagnosis.evidence[:8]),
                *(f"facts.hints[{i}]: {h}" for i, h in enumerate(hints)))
    prevention = " ".join([fault.prevention.strip(), *(advice for key, advice in _ADVICE
                                                      if any(key in h for h in hints))]).strip()
    entry = first_remediation(diagnosis, rules.catalog)
    remediation, params, tier, steps = None, {}, None, ["nothing in the catalog fits: escalate "
                                                        "to a human"]
    if entry is not None:
        remediation, tier = entry.name, entry.risk_tier
        try:
            params = dict(build_plan(diagnosis, entry, (context.host,)).params)
            steps = [f"run role {entry.role} on {context.host} with "
                     f"{params or 'no parameters'}: {entry.description.strip()}",
                     f"verify: {entry.verify.signal} healthy on a fresh sample within "
                     f"{entry.verify.timeout_s:g} s",
                     "if it does not verify: " + ("roll back from the role's snapshot, then "
                                                  "escalate" if entry.rollback == "role"
                                                  else "escalate (nothing to roll back)")]
        except PermanentError as exc:
            steps = [f"refused: {mask.template(str(exc), 200)}; escalate to a human"]
    return Report(host=context.host, fault=fault.name, subject=diagnosis.subject,
                  summary=f"{fault.name} on {context.host}{where}", root_cause=cause,
                  confidence=round(diagnosis.confidence, 3), evidence=evidence,
                  remediation=remediation, params=params, risk_tier=tier, steps=tuple(steps),
                  prevention=prevention)


def _no_fault(context: Context, facts_note: str) -> Report:
    unknown = [s for s, h in context.signals.items() if h == "unknown"]
    firing = [s for s, h in context.signals.items() if h == "firing"]
    if unknown:
        summary = f"{context.host}: cannot judge, no fresh data for {', '.join(unknown)}"
        steps: tuple[str, ...] = ("nothing runs on unknown data: check the host's exporters "
                                  "and Prometheus",)
        confidence = 0.0
    elif firing:
        summary = (f"{context.host}: {', '.join(firing)} firing, matching no fault in "
                   "faults.yml")
        steps = ("nothing in the catalog fits: a human looks",)
        confidence = 0.5
    else:
        summary = f"{context.host}: healthy, no fault"
        steps = ()
        confidence = 1.0
    return Report(host=context.host, fault=None, subject="", summary=summary,
                  root_cause="; ".join(context.facts.hints) or f"nothing found{facts_note}",
                  confidence=confidence,
                  evidence=tuple(f"facts.hints[{i}]: {h}"
                                 for i, h in enumerate(context.facts.hints)),
                  remediation=None, params={}, risk_tier=None, steps=steps, prevention="")
