"""What the root-cause analysis knows about one incident, as frozen records with size budgets.

Built by ``rca.stage`` from the rules' verdict, the metric timeline (``rca.timeline``), the host
facts of the read-only ``diagnose`` role (``rca.facts``) and similar past incidents
(``rca.similar``); read by the rules report (``rca.report``) and the model prompt (``rca.llm``),
and stored with the incident as its snapshot. Every text in it was masked on the way in
(``rca.mask``); ``as_data`` cuts each section to its budget so a noisy host cannot crowd out the
rest or blow up a prompt.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from orchestrator.rca import mask

# Characters of JSON each section may take; lists are cut from the end until they fit.
BUDGETS = {"diagnoses": 2500, "timeline": 3000, "facts": 5000, "similar": 1500}


@dataclass(frozen=True)
class Series:
    """One signal's recent history on the host, downsampled (oldest first, None = no data)."""

    signal: str
    firing_when: str | None
    step_s: float
    values: tuple[float | None, ...]
    subject: str = ""

    def as_data(self) -> dict[str, Any]:
        known = [v for v in self.values if v is not None]
        return {"signal": self.signal, "subject": self.subject, "firing_when": self.firing_when,
                "step_s": self.step_s, "values": list(self.values),
                "min": min(known) if known else None, "max": max(known) if known else None}


@dataclass(frozen=True)
class HostFacts:
    """What the ``diagnose`` role read on the host, masked; ``status`` ok | error | off."""

    status: str
    reason: str = ""
    top_cpu: tuple[Mapping[str, Any], ...] = ()
    top_memory: tuple[Mapping[str, Any], ...] = ()
    memory: Mapping[str, Any] = field(default_factory=dict)
    disks: tuple[Mapping[str, Any], ...] = ()
    failed_units: tuple[str, ...] = ()
    journal: tuple[str, ...] = ()
    unit_journal: tuple[str, ...] = ()
    oom: tuple[str, ...] = ()
    changes: tuple[Mapping[str, Any], ...] = ()
    packages: tuple[str, ...] = ()
    releases: tuple[Mapping[str, Any], ...] = ()
    usage: tuple[Mapping[str, Any], ...] = ()  # what fills the incident's mount point
    database: Mapping[str, Any] = field(default_factory=dict)  # the local PostgreSQL's sessions
    hints: tuple[str, ...] = ()  # selfheal's own sentences about what the facts show

    def as_data(self) -> dict[str, Any]:
        return {k: _plain(v) for k, v in self.__dict__.items()}


@dataclass(frozen=True)
class Similar:
    """A past incident close to this one (TF-IDF over fault, host groups and evidence)."""

    incident: int
    host: str
    fault: str
    state: str
    remediation: str | None
    outcome: str | None
    similarity: float
    detected_at: float


@dataclass(frozen=True)
class Context:
    """Everything gathered for one host's diagnosis."""

    host: str
    groups: tuple[str, ...]
    at: float
    health: str
    diagnoses: tuple[Mapping[str, Any], ...]  # the rules' diagnoses, masked
    notes: tuple[str, ...]
    signals: Mapping[str, str]
    timeline: tuple[Series, ...] = ()
    facts: HostFacts = HostFacts("off", "not gathered")
    similar: tuple[Similar, ...] = ()
    timings: Mapping[str, float] = field(default_factory=dict)

    def as_data(self) -> dict[str, Any]:
        """JSON-ready, each section within its budget (``BUDGETS``)."""
        facts = self.facts.as_data()
        return {
            "host": self.host, "groups": list(self.groups), "at": round(self.at, 3),
            "health": self.health, "notes": [mask.template(n, 200) for n in self.notes],
            "signals": dict(self.signals),
            "diagnoses": fit([_plain(d) for d in self.diagnoses], BUDGETS["diagnoses"]),
            "timeline": fit([s.as_data() for s in self.timeline], BUDGETS["timeline"]),
            "facts": fit_facts(facts, BUDGETS["facts"]),
            "similar": fit([_plain(s.__dict__) for s in self.similar], BUDGETS["similar"]),
        }


def fit(items: Sequence[Any], budget: int) -> list[Any]:
    """The longest prefix of ``items`` whose JSON fits in ``budget`` characters."""
    out: list[Any] = []
    used = 2
    for item in items:
        size = len(json.dumps(item, default=str)) + 1
        if used + size > budget:
            break
        out.append(item)
        used += size
    return out


def fit_facts(facts: dict[str, Any], budget: int) -> dict[str, Any]:
    """Host facts cut to ``budget``: the longest lists lose their last items first."""
    out = dict(facts)
    while len(json.dumps(out, default=str)) > budget:
        lists = [(len(json.dumps(v, default=str)), k) for k, v in out.items()
                 if isinstance(v, list) and v]
        if not lists:
            break
        _, longest = max(lists)
        out[longest] = out[longest][:-1]
    return out


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value
