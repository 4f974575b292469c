"""The root-cause report, rules first: fault summary, root cause, confidence, remediation steps,
prevention, and the evidence used.

Called by ``rca.stage`` (and so by ``selfheal diagnose`` and the sweep). ``rules_report`` needs no
model: the fault and its confidence come from ``faults.yml`` evidence, the cause from the host
facts' hints (an OOM kill, a signal, a deploy, a full disk), the fix from the catalog entry the
rules chose, the prevention from the fault's ``prevention`` text. What the metric timeline shows
for the fault's own signals (the incident's subject: its unit, mount point, target) is said in
the signal's units. ``rca.bind`` may later add the model's words and raise the tier; it never
replaces the rules' fault or fix.
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
from orchestrator.rca.context import Context, Series
from orchestrator.rules import Rules

# Advice added to the fault's own prevention text when a hint shows the matching cause.
_ADVICE = (
    ("the OOM killer acted",
     "Cap the service's memory (MemoryMax= in its unit) and find what grows."),
    ("% full", "Rotate and compress logs by size (logrotate maxsize), alert on disk fill rate."),
    ("a deploy", "Watch the service for an hour after each deploy and roll back on regressions."),
    ("package changes", "Review upgrades before they reach every host (a canary group first)."),
)


# How a signal's values read for people: (factor, unit); a signal not listed shows its raw value.
_SHARE = (100.0, " %")
_MIB = (1 / 2**20, " MiB")
_UNITS = {"disk_free": _SHARE, "disk_available": _SHARE, "memory_available": _SHARE,
          "cpu": _SHARE, "db_pool_used": _SHARE, "db_idle_in_transaction": _SHARE,
          "service_memory_high": _MIB, "service_memory_high_after_deploy": _MIB,
          "service_rss": _MIB, "tls_cert_expiry": (1 / 86400, " days"),
          "process_cpu_high": (1.0, " of a core")}


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
    subject = mask.subject(diagnosis.subject)
    where = f" ({subject})" if subject else ""
    metrics = _metrics(context.timeline, fault.when_firing, subject)
    cause = f"{fault.description.rstrip('.')}{where}."
    if metrics:
        cause += " What the metrics show: " + "; ".join(text for _, text in metrics) + "."
    cause += (" What the host shows: " + "; ".join(hints) + "." if hints
              else " The host facts show no further cause" + (facts_note or ".") )
    evidence = (*(f"rules: {mask.template(e, 200)}" for e in diagnosis.evidence[:8]),
                *(f"timeline[{i}]: {text}" for i, text in metrics),
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
    return Report(host=context.host, fault=fault.name, subject=subject,
                  summary=f"{fault.name} on {context.host}{where}", root_cause=cause,
                  confidence=round(diagnosis.confidence, 3), evidence=evidence,
                  remediation=remediation, params=params, risk_tier=tier, steps=tuple(steps),
                  prevention=prevention)


def _metrics(timeline: tuple[Series, ...], signals: tuple[str, ...], subject: str
             ) -> list[tuple[int, str]]:
    """(timeline index, sentence) for the fault's firing signals on the incident's subject:
    the value now against the threshold, and at the start of the window."""
    out = []
    for i, series in enumerate(timeline):
        if series.signal not in signals or (series.subject and subject and
                                            series.subject != subject):
            continue
        known = [(n, v) for n, v in enumerate(series.values) if v is not None]
        if not known:
            continue
        (first_at, first), (last_at, last) = known[0], known[-1]
        where = f" ({series.subject})" if series.subject else ""
        text = f"{series.signal}{where} is {_value(series.signal, last)}"
        if series.firing_when:
            op, _, limit = series.firing_when.partition(" ")
            try:
                text += f" (fires when {op} {_value(series.signal, float(limit))})"
            except ValueError:
                text += f" (fires when {mask.template(series.firing_when, 40)})"
        if last_at > first_at:
            text += (f", {_value(series.signal, first)} "
                     f"{(last_at - first_at) * series.step_s / 60:.0f} min earlier")
        out.append((i, text))
    return out


def _value(signal: str, value: float) -> str:
    factor, unit = _UNITS.get(signal, (1.0, ""))
    return f"{value * factor:.3g}{unit}"


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
