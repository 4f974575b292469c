"""Turn detector scores into findings: one confidence per host and subject, with evidence, deduped.

Called by ``fleet.FleetDetector.step`` users (the sweep, the benchmarks). Every detector hands in
``Candidate`` records (a score in 0..1 and a line of evidence); ``combine`` merges the candidates
for the same host and subject (a signal or a pattern name) with a noisy-OR, keeps those at or above
``min_confidence``, and drops a finding already raised for that host and subject within
``dedup_s`` (the caller keeps the ``last_raised`` map between sweeps).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from orchestrator.core.detect.rules import CombinerParams
from orchestrator.models import Finding, Health


@dataclass(frozen=True)
class Candidate:
    """One detector's opinion that ``subject`` on ``host`` is anomalous at ``at``."""

    host: str
    subject: str  # a signal name, or a pattern name for multi-metric patterns
    detector: str
    at: float
    score: float  # 0..1
    value: float | None = None
    evidence: str = ""


def combine(candidates: Iterable[Candidate], params: CombinerParams | None = None,
            last_raised: Mapping[tuple[str, str], float] | None = None,
            ) -> tuple[tuple[Finding, ...], dict[tuple[str, str], float]]:
    """Merge candidates into findings; returns the findings and the updated ``last_raised``."""
    params = params or CombinerParams()
    raised = dict(last_raised or {})
    groups: dict[tuple[str, str], list[Candidate]] = defaultdict(list)
    for c in candidates:
        groups[(c.host, c.subject)].append(c)
    findings: list[Finding] = []
    for key in sorted(groups):
        group = groups[key]
        miss = 1.0
        for c in group:
            miss *= 1.0 - min(max(c.score, 0.0), 1.0)
        confidence = 1.0 - miss
        at = max(c.at for c in group)
        if confidence < params.min_confidence:
            continue
        previous = raised.get(key)
        if previous is not None and at - previous < params.dedup_s:
            continue
        raised[key] = at
        detectors = sorted({c.detector for c in group})
        value = next((c.value for c in group if c.value is not None), None)
        findings.append(Finding(
            host=key[0], signal=key[1], health=Health.FIRING, observed_at=at, value=value,
            confidence=round(confidence, 3), source="detect:" + "+".join(detectors),
            evidence=tuple(f"{c.detector}: {c.evidence}" for c in group if c.evidence),
        ))
    return tuple(findings), raised
