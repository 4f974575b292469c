"""Rules-first diagnosis: which fault each host has, from the findings of one sweep.

Called by ``engine`` after the sources produced findings. A signal concerns a host when the host
exports it or must (``applies_to`` in signals.yml, through the host's inventory groups); a host
a signal does not concern is neither unknown nor broken for it. A fault is diagnosed per subject
of its lead signal (one per unit, per mount point) when every ``when_firing`` signal fires there
(for the same subject where the signal has the same subject labels), every ``when_detected``
detector opinion is there and every ``when_healthy`` signal is known healthy; if a needed signal
is unknown nothing is acted on. Among faults on the same host and subject, one that
``supersedes`` another wins.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field

from orchestrator.core.faults import Fault, FaultRules
from orchestrator.models import Diagnosis, Finding, Health

Detected = tuple[str, str, str]  # (host, signal, detector) opinions of the learned detectors


@dataclass(frozen=True)
class HostVerdict:
    """One host's overall state in a sweep, with the reason in words."""

    host: str
    health: Health
    diagnoses: tuple[Diagnosis, ...]
    notes: tuple[str, ...]
    signals: Mapping[str, Health] = field(default_factory=dict)
    findings: Mapping[str, tuple[Finding, ...]] = field(default_factory=dict)

    def cleared(self, fault: Fault, subject: str, rules: FaultRules) -> bool:
        """The fault's lead signal is known and healthy for ``subject`` (unknown is not cleared;
        ``""``: every series of the host).

        A subject whose series is gone while the host still reports the signal (the rogue
        process ended, the unit was removed) is cleared too.
        """
        found = self.findings.get(fault.lead, ())
        if not found or any(f.health is Health.UNKNOWN for f in found):
            return False
        lead = rules.signals[fault.lead]
        return all(f.health is Health.HEALTHY for f in found
                   if not subject or lead.subject_of(f.labels) == subject)


def _state(found: Iterable[Finding]) -> Health:
    found = list(found)
    if not found or any(f.health is Health.UNKNOWN for f in found):
        return Health.UNKNOWN
    if any(f.health is Health.FIRING for f in found):
        return Health.FIRING
    return Health.HEALTHY


def _concerning(findings: Iterable[Finding], rules: FaultRules, hosts: Collection[str],
                groups: Mapping[str, tuple[str, ...]]) -> dict[str, dict[str, list[Finding]]]:
    """host -> signal -> findings, without the signals that do not concern the host."""
    table: dict[str, dict[str, list[Finding]]] = defaultdict(lambda: defaultdict(list))
    for f in findings:
        signal = rules.signals.get(f.signal)
        if f.host not in hosts or signal is None:
            continue
        if f.absent and not signal.required_on(groups.get(f.host, ())):
            continue  # not exported here and not required here: not this host's concern
        table[f.host][f.signal].append(f)
    return table


def _fault_on(fault: Fault, rules: FaultRules, signals: Mapping[str, list[Finding]],
              detected: Collection[Detected], host: str) -> tuple[list[Diagnosis], str | None]:
    """The fault's diagnoses on one host (one per firing subject), or a note why not."""
    if any((host, d.signal, d.detector) not in detected for d in fault.when_detected):
        return [], None
    blockers = [s for s in fault.when_healthy if _state(signals.get(s, [])) is not Health.HEALTHY]
    detected_evidence = tuple(f"{d.detector} detector: {d.signal} anomalous"
                              for d in fault.when_detected)
    if not fault.when_firing:
        if blockers:
            return [], _blocked(fault, blockers)
        return [Diagnosis(host=host, fault=fault.name, confidence=0.8,
                          evidence=detected_evidence, remediations=fault.remediations)], None
    lead = rules.signals[fault.lead]
    by_subject: dict[str, list[Finding]] = defaultdict(list)
    for f in signals.get(fault.lead, []):
        if f.health is Health.FIRING:
            by_subject[lead.subject_of(f.labels)].append(f)
    out: list[Diagnosis] = []
    for subject, lead_found in sorted(by_subject.items()):
        evidence = [e for f in lead_found for e in f.evidence]
        ok = True
        for name in fault.when_firing[1:]:
            other = rules.signals[name]
            found = signals.get(name, [])
            if other.subject == lead.subject and subject:
                found = [f for f in found if other.subject_of(f.labels) == subject]
            firing = [f for f in found if f.health is Health.FIRING]
            if not firing:
                ok = False
                break
            evidence += [e for f in firing for e in f.evidence]
        if not ok:
            continue
        if blockers:
            return [], _blocked(fault, blockers)
        evidence += [f"{s} healthy" for s in fault.when_healthy]
        out.append(Diagnosis(host=host, fault=fault.name,
                             confidence=min(f.confidence for f in lead_found),
                             evidence=(*evidence, *detected_evidence),
                             remediations=fault.remediations, labels=lead_found[0].labels,
                             subject=subject))
    return out, None


def _blocked(fault: Fault, blockers: list[str]) -> str:
    return (f"{fault.name} suspected but {', '.join(blockers)} is not healthy or unknown: "
            "not acting")


def _most_specific(found: list[Diagnosis], rules: FaultRules) -> list[Diagnosis]:
    """Drop a diagnosis that another on the same subject supersedes."""
    beaten = {(d.fault, d.subject) for winner in found
              for d in found for name in rules.faults[winner.fault].supersedes
              if d.fault == name and (d.subject == winner.subject or not d.subject
                                      or not winner.subject)}
    return [d for d in found if (d.fault, d.subject) not in beaten]


def diagnose(findings: Iterable[Finding], rules: FaultRules, hosts: Iterable[str],
             groups: Mapping[str, tuple[str, ...]] | None = None,
             detected: Collection[Detected] = ()) -> list[HostVerdict]:
    """A verdict for every host in ``hosts`` (``groups``: each host's inventory groups).

    A host none of whose required signals has data is UNKNOWN. A host with no diagnosis is
    FIRING only when a symptom fires (``FaultRules.evidence_only`` lists the signals that are
    not one): that is what "too much broken" counts.
    """
    hosts = sorted(set(hosts))
    groups = groups or {}
    table = _concerning(findings, rules, set(hosts), groups)
    used = rules.used_signals
    evidence_only = rules.evidence_only  # derived from the rules: once, not per host
    verdicts = []
    for host in hosts:
        signals = table.get(host, {})
        diagnoses: list[Diagnosis] = []
        notes: list[str] = []
        for fault in rules.faults.values():
            found, note = _fault_on(fault, rules, signals, detected, host)
            diagnoses += found
            if note:
                notes.append(note)
        diagnoses = _most_specific(diagnoses, rules)
        states = {s: _state(signals[s]) for s in used if s in signals}
        missing = sorted(s for s in used if s not in signals
                         and rules.signals[s].required_on(groups.get(host, ())))
        states.update(dict.fromkeys(missing, Health.UNKNOWN))
        if diagnoses:
            health = Health.FIRING
        elif Health.UNKNOWN in states.values():
            health = Health.UNKNOWN
            unknown = sorted(s for s, h in states.items() if h is Health.UNKNOWN)
            notes.append(f"no fresh data for {', '.join(unknown)}")
        elif symptoms := [s for s, h in states.items()
                          if h is Health.FIRING and s not in evidence_only]:
            health = Health.FIRING
            notes.append("signals firing that match no fault: " + ", ".join(symptoms))
        else:
            health = Health.HEALTHY
            if evidence := [s for s, h in states.items() if h is Health.FIRING]:
                notes.append(f"{', '.join(evidence)} firing, but only evidence beside other "
                             "signals or a detector's finding: no fault on its own")
        verdicts.append(HostVerdict(host, health, tuple(diagnoses), tuple(notes), states,
                                    {s: tuple(f) for s, f in signals.items()}))
    return verdicts
