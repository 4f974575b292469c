"""Bind a diagnosis to one catalog remediation: explicit targets, checked parameters.

Called by ``engine`` for each diagnosis and by ``selfheal remediate``. Label values came from
outside (Prometheus targets, alert payloads) and are refused unless they fully match the
parameter's pattern; nothing is ever run on a guess.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping

from orchestrator.core.catalog import Catalog, ParamSpec, Remediation
from orchestrator.core.learning import Records, rank
from orchestrator.errors import TargetError, UnsafeValueError
from orchestrator.models import Diagnosis, Plan

_FIELD = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


def resolve_param(name: str, spec: ParamSpec, labels: Mapping[str, str],
                  given: str | None = None) -> str:
    """The parameter's value, or UnsafeValueError naming the value and the pattern it missed.

    ``given``: a value a human passed by hand (``remediate -p NAME=VALUE``); it replaces the
    label or template but must pass the same pattern.
    """
    if given is not None:
        value = given
    elif spec.value is not None:
        value = spec.value
    elif spec.from_label is not None:
        if spec.from_label not in labels:
            raise UnsafeValueError(f"parameter '{name}' needs label '{spec.from_label}', which the "
                                   f"series does not carry (labels: {sorted(labels)})")
        value = labels[spec.from_label]
    else:
        assert spec.template is not None

        def field(match: re.Match[str]) -> str:
            label = match.group(1)
            if label not in labels:
                raise UnsafeValueError(f"parameter '{name}' template needs label '{label}'")
            return labels[label]

        value = _FIELD.sub(field, spec.template)
    if not re.fullmatch(spec.pattern, value):
        raise UnsafeValueError(f"refused parameter '{name}'={value[:120]!r}: it does not match "
                               f"{spec.pattern!r} (a label with unexpected characters?)")
    return value


def build_plan(diagnosis: Diagnosis, remediation: Remediation, targets: tuple[str, ...],
               given: Mapping[str, str] | None = None) -> Plan:
    """A plan for ``remediation`` against ``targets`` (never empty).

    ``given``: parameter values a human passed by hand, each checked against its pattern.
    """
    if not targets:
        raise TargetError("refusing a plan with no target hosts: an empty target set is never "
                          "'all hosts'")
    given = dict(given or {})
    unknown = sorted(set(given) - set(remediation.params))
    if unknown:
        raise UnsafeValueError(f"{unknown} are not parameters of {remediation.name} (its "
                               f"parameters: {sorted(remediation.params)})")
    params = {name: resolve_param(name, spec, diagnosis.labels, given.get(name))
              for name, spec in remediation.params.items()}
    return Plan(
        fault=diagnosis.fault, remediation=remediation.name, role=remediation.role,
        targets=targets, params=params, risk_tier=remediation.risk_tier,
        cooldown_s=remediation.cooldown_s, check_first=remediation.check_first,
        verify_signal=remediation.verify.signal, labels=diagnosis.labels,
        subject=diagnosis.subject,
    )


def plan_digest(plan: Plan, remediation: Remediation) -> str:
    """A hash of everything a plan would do: role, targets, parameters and the catalog entry.

    An approval is bound to it; any change (a new label value, an edited catalog entry, another
    host) gives another digest and needs a new approval.
    """
    body = {"remediation": plan.remediation, "role": plan.role, "targets": list(plan.targets),
            "params": dict(plan.params), "entry": remediation.model_dump(mode="json")}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def first_remediation(diagnosis: Diagnosis, catalog: Catalog,
                      records: Records | None = None) -> Remediation | None:
    """The fault's best remediation: by its record when ``records`` are given
    (``core.learning``), else (and on ties) the order the fault rule lists them in."""
    for name in rank(diagnosis.fault, diagnosis.remediations, records or {}):
        entry = catalog.get(name)
        if entry is not None:
            return entry
    return None
