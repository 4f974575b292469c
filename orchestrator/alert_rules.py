"""Prometheus alerting rules generated from the fault rules, so Alertmanager can wake serve.

Called by ``selfheal alert-rules``. One alert per fault, on the fault's lead signal (the first of
``when_firing``) with its ``firing_when`` comparison, labelled ``fault: <name>``: that label is
how serve groups alerts by root cause. The expression keeps the signal's labels, so the alert
carries its subject (``unit``, ``mountpoint``) as the incident will. The alert only wakes a
sweep; the sweep judges the whole rule (every ``when_firing`` and ``when_healthy`` signal) from
Prometheus as always, so the alert may be broader than the fault. Faults that need a learned
detector's finding (``when_detected``) have no PromQL that says they fire: an alert on their
PromQL part alone would page for a fault that is not there (every service whose memory grows,
without the forecast), so they are listed in a comment instead; the sweep finds them. Pure: no
I/O.
"""

from __future__ import annotations

from typing import Any

from orchestrator.core.faults import FaultRules

SEVERITY = "selfheal"


def alert_name(fault: str) -> str:
    return "Selfheal" + "".join(part.capitalize() for part in fault.split("_"))


def _no_templating(text: str) -> str:
    # annotations are Go templates: text from the rules must not be one
    return " ".join(text.replace("{{", "{ {").replace("}}", "} }").split())


def alerting_rules(faults: FaultRules) -> tuple[dict[str, Any], tuple[str, ...]]:
    """The rule file as data, and the faults left out (detector-only) with the reason."""
    rules: list[dict[str, Any]] = []
    skipped: list[str] = []
    for name, fault in sorted(faults.faults.items()):
        if fault.when_detected:
            skipped.append(f"{name}: needs a learned detector's finding, which Prometheus does "
                           "not compute; the sweep finds it")
            continue
        signal = faults.signals[fault.lead]
        comparison = signal.comparison
        if comparison is None:
            skipped.append(f"{name}: its signal {signal.name} has no firing_when")
            continue
        which = "".join(f" {key} {{{{ $labels.{key} }}}}" for key in signal.subject)
        rule: dict[str, Any] = {
            "alert": alert_name(name),
            "expr": f"({signal.promql.strip()}) {comparison.op} {comparison.threshold:g}",
            "labels": {"fault": name, "severity": SEVERITY},
            "annotations": {
                "summary": f"{name}{which} on {{{{ $labels.instance }}}}",
                "description": _no_templating(fault.description),
            },
        }
        if signal.for_s:
            rule["for"] = f"{signal.for_s:g}s"
        rules.append(rule)
    return {"groups": [{"name": "selfheal-faults", "rules": rules}]}, tuple(skipped)
