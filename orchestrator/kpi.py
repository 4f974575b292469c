"""selfheal's KPIs for Prometheus, computed from the store so every process tells the same figures.

Called by ``orchestrator.health`` (the node_exporter textfile after each sweep, cron mode) and by
``orchestrator.api`` (``/metrics`` of ``selfheal serve``). Counts come from the incident store and
the audit log, never from one process's memory, so a restart or a sweep from cron neither loses
nor doubles them.

Definitions (docs/serve.md, "KPIs"):
- an incident's *outcome* is its end state, with ``resolved`` split in two: ``healed`` (a fix
  ran and verified) and ``cleared`` (the fault went away before any fix ran);
- *time to detect*: from the start of the fault as an Alertmanager alert dated it (its startsAt)
  to the incident's opening; incidents no alert told of have none;
- *time to heal*: from the incident's opening to its verified fix (healed incidents);
- *self-healing success ratio*: healed / (healed + rolled back + escalated), false positives
  left out; NaN before the first such incident;
- *human interventions*: approvals, retries and remediations run by hand (from the audit log).
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from orchestrator.models import Incident, IncidentState as S, OutcomeStatus

if TYPE_CHECKING:
    from orchestrator.store.db import Store

# seconds; a crash healed in 5 s and a disk cleaned in 10 min both land in a useful bucket
BUCKETS = (1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
INTERVENTIONS = {"incident.approved": "approval", "incident.retried": "retry",
                 "manual.remediate": "manual_run"}
OUTCOMES = ("healed", "cleared", "rolled_back", "escalated", "suppressed")


@dataclass(frozen=True)
class Kpis:
    """The figures, as plain values (``from_store`` reads them; tests build their own)."""

    active: Mapping[str, int] = field(default_factory=dict)  # incidents that still matter
    runs: Mapping[str, int] = field(default_factory=dict)  # remediation runs by outcome
    rollbacks: Mapping[str, int] = field(default_factory=dict)  # rollback runs by outcome
    outcomes: Mapping[tuple[str, str], int] = field(default_factory=dict)  # (fault, outcome)
    false_positives: Mapping[str, int] = field(default_factory=dict)  # by fault
    detect_s: Mapping[str, tuple[float, ...]] = field(default_factory=dict)  # by fault
    heal_s: Mapping[str, tuple[float, ...]] = field(default_factory=dict)  # by fault
    interventions: Mapping[str, int] = field(default_factory=dict)  # by kind

    @property
    def success_ratio(self) -> float:
        tally: Counter[str] = Counter()
        for (_fault, outcome), n in self.outcomes.items():
            tally[outcome] += n
        tried = tally["healed"] + tally["rolled_back"] + tally["escalated"]
        return tally["healed"] / tried if tried else math.nan

    @classmethod
    def from_store(cls, store: Store, since: float | None = None) -> Kpis:
        """Every figure, or those of incidents opened (and runs, interventions) since then."""
        audit = store.audit_counts(tuple(INTERVENTIONS), since)
        incidents = [i for i in store.all_incidents()
                     if since is None or i.detected_at >= since]
        return cls.from_incidents(
            incidents, active=store.incident_counts(), runs=store.run_counts(since=since),
            rollbacks=store.run_counts("rollback", since),
            interventions={kind: audit.get(action, 0) for action, kind in INTERVENTIONS.items()})

    @classmethod
    def from_incidents(cls, incidents: Iterable[Incident], **counts: Any) -> Kpis:
        outcomes: Counter[tuple[str, str]] = Counter()
        false_positives: Counter[str] = Counter()
        detect: defaultdict[str, list[float]] = defaultdict(list)
        heal: defaultdict[str, list[float]] = defaultdict(list)
        for incident in incidents:
            began = incident.detail.get("fault_started_at")
            if isinstance(began, int | float):
                detect[incident.fault].append(max(0.0, incident.detected_at - float(began)))
            if incident.detail.get("false_positive"):
                false_positives[incident.fault] += 1
                continue  # not a fault: neither a success nor a failure of the healing
            outcome = _outcome(incident)
            if outcome is None:
                continue
            outcomes[(incident.fault, outcome)] += 1
            if outcome == "healed" and incident.resolved_at is not None:
                heal[incident.fault].append(max(0.0, incident.resolved_at - incident.detected_at))
        return cls(outcomes=dict(outcomes), false_positives=dict(false_positives),
                   detect_s={f: tuple(v) for f, v in detect.items()},
                   heal_s={f: tuple(v) for f, v in heal.items()}, **counts)


def _outcome(incident: Incident) -> str | None:
    if not incident.state.is_terminal:
        return None
    if incident.state is S.RESOLVED:
        return "healed" if incident.remediation_started_at is not None else "cleared"
    return incident.state.value


def families(k: Kpis) -> Iterator[Any]:
    """The KPIs as prometheus_client metric families (for a collector's ``collect``)."""
    from prometheus_client.core import (
        CounterMetricFamily,
        GaugeMetricFamily,
        HistogramMetricFamily,
    )

    active = GaugeMetricFamily(
        "selfheal_incidents", "incidents that still matter (open, or ended while the fault "
        "lasts), by state", labels=["state"])
    states = {s.value: 0 for s in S if s is not S.RESOLVED}
    for state, count in sorted({**states, **k.active}.items()):
        active.add_metric([state], count)
    yield active
    yield _by("selfheal_remediation_runs", "remediation runs (not check mode, not rollbacks) "
              "by outcome, from the store", "outcome",
              {**{o.value: 0 for o in OutcomeStatus}, **k.runs}, CounterMetricFamily)
    yield _by("selfheal_rollbacks", "rollback runs (after a fix that failed or did not verify) "
              "by outcome", "outcome", {**{o.value: 0 for o in OutcomeStatus}, **k.rollbacks},
              CounterMetricFamily)
    ended = CounterMetricFamily("selfheal_incidents_ended", "ended incidents by fault and outcome "
                                "(healed, cleared, rolled_back, escalated, suppressed); false "
                                "positives left out", labels=["fault", "outcome"])
    for (fault, outcome), count in sorted(k.outcomes.items()):
        ended.add_metric([fault, outcome], count)
    yield ended
    fps = CounterMetricFamily("selfheal_false_positives", "incidents a human marked as no "
                              "fault (`selfheal incidents mark ID --false-positive`)",
                              labels=["fault"])
    for fault, count in sorted(k.false_positives.items()):
        fps.add_metric([fault], count)
    yield fps
    yield _by("selfheal_human_interventions", "approvals, retries and remediations run by "
              "hand", "kind", {**dict.fromkeys(INTERVENTIONS.values(), 0), **k.interventions},
              CounterMetricFamily)
    yield GaugeMetricFamily("selfheal_self_healing_success_ratio", "healed / (healed + rolled "
                            "back + escalated) over every incident, false positives left out",
                            k.success_ratio)
    for name, doc, samples in (
            ("selfheal_time_to_detect_seconds", "from the fault's start (its alert's startsAt) "
             "to the incident's opening", k.detect_s),
            ("selfheal_time_to_heal_seconds", "from the incident's opening to its verified fix",
             k.heal_s)):
        hist = HistogramMetricFamily(name, doc, labels=["fault"])
        for fault, values in sorted(samples.items()):
            hist.add_metric([fault], _buckets(values), sum_value=sum(values))
        yield hist


def _by(name: str, doc: str, label: str, values: Mapping[str, int], kind: Any) -> Any:
    family = kind(name, doc, labels=[label])
    for key, count in sorted(values.items()):
        family.add_metric([key], count)
    return family


def _buckets(values: tuple[float, ...]) -> list[tuple[str, float]]:
    out = [(_le(bound), float(sum(1 for v in values if v <= bound))) for bound in BUCKETS]
    return [*out, ("+Inf", float(len(values)))]


def _le(bound: float) -> str:
    return f"{bound:g}" if bound != int(bound) else f"{bound:.1f}"
