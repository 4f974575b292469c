"""Rules-first diagnosis: which fault each host has, from the findings of one sweep.

Called by ``engine`` after the sources produced findings. A fault is diagnosed on a host only
when every ``when_firing`` signal fires there and every ``when_healthy`` signal is known to be
healthy there; if a needed signal is unknown the host's verdict is UNKNOWN and nothing is acted on.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from orchestrator.core.faults import Fault, FaultRules
from orchestrator.models import Diagnosis, Finding, Health


@dataclass(frozen=True)
class HostVerdict:
    """One host's overall state in a sweep, with the reason in words."""

    host: str
    health: Health
    diagnoses: tuple[Diagnosis, ...]
    notes: tuple[str, ...]
    signals: Mapping[str, Health] = field(default_factory=dict)

    def cleared(self, fault: Fault) -> bool:
        """The fault's own signals are known and say it is gone (unknown is not cleared)."""
        firing = [self.signals.get(s, Health.UNKNOWN) for s in fault.when_firing]
        return all(h is Health.HEALTHY for h in firing)


def _by_host(findings: Iterable[Finding]) -> Mapping[str, Mapping[str, list[Finding]]]:
    table: dict[str, dict[str, list[Finding]]] = defaultdict(lambda: defaultdict(list))
    for f in findings:
        table[f.host][f.signal].append(f)
    return table


def _state(found: list[Finding]) -> Health:
    if not found or any(f.health is Health.UNKNOWN for f in found):
        return Health.UNKNOWN
    if any(f.health is Health.FIRING for f in found):
        return Health.FIRING
    return Health.HEALTHY


def diagnose(findings: Iterable[Finding], rules: FaultRules,
             hosts: Iterable[str]) -> list[HostVerdict]:
    """A verdict for every host in ``hosts``; a host with no data at all is UNKNOWN."""
    table = _by_host(findings)
    verdicts = []
    for host in sorted(set(hosts)):
        signals = table.get(host, {})
        diagnoses: list[Diagnosis] = []
        notes: list[str] = []
        for fault in rules.faults.values():
            firing = [signals.get(s, []) for s in fault.when_firing]
            if not all(_state(f) is Health.FIRING for f in firing):
                continue
            blockers = [s for s in fault.when_healthy
                        if _state(signals.get(s, [])) is not Health.HEALTHY]
            if blockers:
                notes.append(f"{fault.name} suspected but {', '.join(blockers)} is not healthy "
                             "or unknown: not acting")
                continue
            lead = [f for f in firing[0] if f.health is Health.FIRING]
            evidence = tuple(e for group in firing for f in group if f.health is Health.FIRING
                             for e in f.evidence)
            evidence += tuple(f"{s} healthy" for s in fault.when_healthy)
            diagnoses.append(Diagnosis(
                host=host, fault=fault.name, confidence=min(f.confidence for f in lead),
                evidence=evidence, remediations=fault.remediations, labels=lead[0].labels,
            ))
        states = {s: _state(signals.get(s, [])) for s in rules.signals}
        if diagnoses:
            health = Health.FIRING
        elif Health.UNKNOWN in states.values():
            health = Health.UNKNOWN
            missing = sorted(s for s, h in states.items() if h is Health.UNKNOWN)
            notes.append(f"no fresh data for {', '.join(missing)}")
        elif Health.FIRING in states.values():
            health = Health.FIRING
            notes.append("signals firing that match no fault: "
                         + ", ".join(s for s, h in states.items() if h is Health.FIRING))
        else:
            health = Health.HEALTHY
        verdicts.append(HostVerdict(host, health, tuple(diagnoses), tuple(notes), states))
    return verdicts
