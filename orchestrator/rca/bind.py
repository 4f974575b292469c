"""The model's answer, bound to the catalog: validated, checked, and merged under the rules.

Called by ``rca.stage`` with the raw text the model returned (``rca.llm``). ``parse`` reads it
into ``Answer`` (pydantic; anything else is garbage: ``GarbageAnswer``). ``check`` refuses an
answer that names a fault outside faults.yml or a remediation outside the catalog, gives
parameters the entry does not have or values that do not fully match the catalog's patterns
(shell, Jinja, a path out of bounds), or proposes a risk tier below the catalog's. ``merge``
keeps the rules' fault and fix in the report (the model's evidence only where it names an item of
the gathered context, ``resolves``): an answer that agrees adds its words and may raise
the tier; one that disagrees on the fault or the fix makes the incident need a human's approval
(and, where the rules found no fault, its proposal is only shown).
Nothing the model wrote is ever run; its text is shown as its own, redacted.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from orchestrator.rca import mask
from orchestrator.rca.report import LlmStatus, Report
from orchestrator.rules import Rules

NONE = "none"
# Never in a parameter, whatever a catalog pattern allows: template and shell syntax.
_METACHARACTERS = re.compile(r"\{\{|\{%|\$\(|\$\{|`|[;&|<>\n\r\\]")
_FENCE = re.compile(r"^\s*```(?:json)?\s*(.*?)\s*```\s*$", re.S)


class GarbageAnswer(ValueError):
    """The model's text is not the JSON object the schema asks for."""


class Answer(BaseModel):
    """What the model must return (``SCHEMA`` is the same, for the model)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    summary: str = Field(max_length=600)
    root_cause: str = Field(max_length=1500)
    confidence: float = Field(ge=0, le=1)
    evidence: list[str] = Field(max_length=12)
    fault: str = Field(max_length=64)
    remediation: str = Field(max_length=64)
    parameters: dict[str, str] = Field(default_factory=dict, max_length=8)
    risk_tier: int | None = Field(None, ge=1, le=3)
    prevention: str = Field(max_length=1000)


SCHEMA: dict[str, Any] = {
    "type": "object", "additionalProperties": False,
    "required": ["summary", "root_cause", "confidence", "evidence", "fault", "remediation",
                 "parameters", "risk_tier", "prevention"],
    "properties": {
        "summary": {"type": "string"}, "root_cause": {"type": "string"},
        "confidence": {"type": "number", "minimum": 0, "maximum": 1},
        "evidence": {"type": "array", "items": {"type": "string"}},
        "fault": {"type": "string", "description": "a fault name from `faults`, or none"},
        "remediation": {"type": "string",
                        "description": "a remediation name from `catalog`, or none"},
        "parameters": {"type": "object", "additionalProperties": {"type": "string"}},
        "risk_tier": {"type": ["integer", "null"], "minimum": 1, "maximum": 3},
        "prevention": {"type": "string"},
    },
}


@dataclass(frozen=True)
class Checked:
    """An answer that passed ``check``: whether it agrees with the rules, and its tier."""

    answer: Answer
    agrees: bool
    risk_tier: int | None
    disagreement: str = ""


def parse(text: str) -> Answer:
    """The model's text as an ``Answer``; ``GarbageAnswer`` says what was wrong with it."""
    fenced = _FENCE.match(text)
    body = fenced.group(1) if fenced else text.strip()
    try:
        data = json.loads(body)
    except json.JSONDecodeError as exc:
        raise GarbageAnswer(f"not JSON ({exc.msg} at character {exc.pos})") from exc
    if not isinstance(data, dict):
        raise GarbageAnswer(f"a JSON {type(data).__name__}, not an object")
    try:
        return Answer.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "answer"
        raise GarbageAnswer(f"{exc.error_count()} schema errors, first {where}: "
                            f"{first['msg']}") from exc


def check(answer: Answer, report: Report, rules: Rules) -> Checked:
    """Refuse (``ValueError`` naming why) an answer that leaves the catalog or lowers a tier."""
    faults, catalog = rules.faults.faults, rules.catalog
    if answer.fault != NONE and answer.fault not in faults:
        raise ValueError(f"it names fault {answer.fault[:64]!r}, which faults.yml does not "
                         "define")
    entry = None
    if answer.remediation != NONE:
        entry = catalog.get(answer.remediation)
        if entry is None:
            raise ValueError(f"it names remediation {answer.remediation[:64]!r}, which is not "
                             f"in the catalog ({', '.join(sorted(catalog.remediations))})")
        extra = sorted(set(answer.parameters) - set(entry.params))
        if extra:
            raise ValueError(f"parameters {[p[:40] for p in extra]} are not parameters of "
                             f"{entry.name} (its role's argument_specs)")
        for name, value in answer.parameters.items():
            if _METACHARACTERS.search(value) or not re.fullmatch(entry.params[name].pattern,
                                                                 value):
                raise ValueError(f"parameter {name}={value[:60]!r} does not match the "
                                 f"catalog's pattern {entry.params[name].pattern!r}")
        if answer.risk_tier is not None and answer.risk_tier < entry.risk_tier:
            raise ValueError(f"it proposes risk tier {answer.risk_tier} for {entry.name}, "
                             f"below the catalog's {entry.risk_tier}: a model never lowers "
                             "a tier")
    elif answer.parameters:
        raise ValueError("it gives parameters but no remediation")
    rules_fault = report.fault or NONE
    rules_fix = report.remediation or NONE
    same_params = all(report.params.get(k) == v for k, v in answer.parameters.items())
    why = []
    if answer.fault != rules_fault:
        why.append(f"the model sees fault {answer.fault}, the rules {rules_fault}")
    if answer.remediation != rules_fix or not same_params:
        why.append(f"the model proposes {answer.remediation} {answer.parameters or ''}, "
                   f"the rules {rules_fix} {dict(report.params) or ''}".replace("  ", " "))
    tiers = [t for t in (report.risk_tier, answer.risk_tier,
                         entry.risk_tier if entry else None) if t is not None]
    return Checked(answer, not why, max(tiers) if tiers else None, "; ".join(why))


_REFERENCE = re.compile(r"^([a-z_]+)(?:\.([a-z_]+))?(?:\[(\d+)\])?")


def resolves(reference: str, context: Mapping[str, Any]) -> bool:
    """Whether ``reference`` ("timeline[0]", "facts.hints[1]", "similar[0]") names an item of
    the gathered context."""
    match = _REFERENCE.match(reference.strip())
    if not match:
        return False
    section, key, index = match.groups()
    found: Any = context.get(section)
    if key is not None:
        found = found.get(key) if isinstance(found, Mapping) else None
    if index is not None:
        return isinstance(found, list) and int(index) < len(found)
    return found not in (None, [], {})


def merge(report: Report, checked: Checked, context: Mapping[str, Any] | None = None) -> Report:
    """The rules' report with the model's checked answer: its words, a raised tier, and a
    human's approval when it disagrees. The report's fault, fix and parameters stay the rules';
    the model's own choice is kept in ``model`` for people to read, never run on its own."""
    answer = checked.answer
    cited = [_words(e, 200) for e in answer.evidence[:12]]
    known = [e for e in cited if context is None or resolves(e, context)]
    words = {"summary": _words(answer.summary), "root_cause": _words(answer.root_cause),
             "prevention": _words(answer.prevention), "confidence": answer.confidence,
             "evidence": known, "evidence_unresolved": len(cited) - len(known),
             "fault": answer.fault, "remediation": answer.remediation,
             "parameters": dict(answer.parameters), "risk_tier": answer.risk_tier}
    if checked.agrees:
        raised = (checked.risk_tier or 0) > (report.risk_tier or 0)
        reason = ("the model agrees with the rules" +
                  (f" and raised the risk tier to {checked.risk_tier}" if raised else ""))
        return replace(report, diagnosed_by="rules+llm", llm_status=LlmStatus.USED,
                       llm_reason=reason, risk_tier=checked.risk_tier, model=words,
                       needs_approval=raised and (checked.risk_tier or 0) >= 3)
    return replace(report, diagnosed_by="rules+llm", llm_status=LlmStatus.USED,
                   llm_reason=f"rules and model disagree ({checked.disagreement}): a human "
                              "approves before anything runs",
                   needs_approval=True, model=words,
                   risk_tier=3 if report.remediation else report.risk_tier)


def _words(text: str, limit: int = 1500) -> str:
    """The model's prose for people: secrets redacted, control characters and template syntax
    dropped; never run, never templated."""
    clean = mask.redact(text)
    clean = re.sub(r"[\x00-\x08\x0b-\x1f\x7f]|\{\{|\}\}|\{%|%\}", " ", clean)
    return " ".join(clean.split())[:limit]
