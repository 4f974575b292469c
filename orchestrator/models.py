"""Frozen domain records and string enums passed between the stages of the loop.

observe -> ``Observation``; detect -> ``Finding``; diagnose -> ``Diagnosis``; plan -> ``Plan``;
guard -> ``Decision``; execute -> ``Outcome``; record -> ``Incident`` and ``AuditRecord``.
Every stage in ``orchestrator.core`` takes and returns these values; only ``sources``,
``execute`` and ``store`` touch the world. Times are UNIX epoch seconds (float, UTC).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Any


def _frozen(mapping: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return MappingProxyType(dict(mapping or {}))


class Health(StrEnum):
    """What one signal says about one host. Missing or stale data is UNKNOWN, never HEALTHY."""

    HEALTHY = "healthy"
    FIRING = "firing"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Observation:
    """One signal's latest sample for one host, as the metrics source returned it."""

    signal: str
    host: str
    value: float | None
    sampled_at: float | None
    labels: Mapping[str, str] = field(default_factory=lambda: _frozen(None))


@dataclass(frozen=True)
class Finding:
    """A signal's verdict on a host at one moment, with the evidence behind it."""

    host: str
    signal: str
    health: Health
    observed_at: float
    value: float | None = None
    confidence: float = 1.0
    source: str = "rule"
    evidence: tuple[str, ...] = ()
    labels: Mapping[str, str] = field(default_factory=lambda: _frozen(None))
    absent: bool = False  # no series at all for the host (unknown only where it is required)


@dataclass(frozen=True)
class Diagnosis:
    """The fault a host most likely has, and the catalog remediations that may fix it."""

    host: str
    fault: str
    confidence: float
    evidence: tuple[str, ...]
    remediations: tuple[str, ...]
    diagnosed_by: str = "rules"
    labels: Mapping[str, str] = field(default_factory=lambda: _frozen(None))
    subject: str = ""  # which of the host's series: "unit=nginx.service", "" when host-wide


@dataclass(frozen=True)
class Plan:
    """One catalog remediation bound to explicit target hosts and checked parameters."""

    fault: str
    remediation: str
    role: str
    targets: tuple[str, ...]
    params: Mapping[str, Any]
    risk_tier: int
    cooldown_s: float
    check_first: bool
    verify_signal: str
    labels: Mapping[str, str] = field(default_factory=lambda: _frozen(None))
    subject: str = ""  # the series it fixes on its host ("unit=nginx.service"), from the diagnosis


class Verdict(StrEnum):
    """What the guardrails allow for a plan."""

    RUN = "run"
    ASK = "ask"  # needs human approval (risk tier, mode)
    REFUSE = "refuse"  # never acceptable as planned (protected unit, flapping): escalate
    HOLD = "hold"  # a limit says wait (too much broken, blast radius, cooldown, breaker, mode):
    # page once, resume by itself when the limit clears
    SUPPRESS = "suppress"  # maintenance window: leave the host alone, quietly
    DEFER = "defer"  # too many fixes running now: try again next sweep, quietly
    DRY_RUN = "dry_run"


@dataclass(frozen=True)
class Decision:
    """The guardrails' verdict on a plan, with every reason that led to it."""

    verdict: Verdict
    reasons: tuple[str, ...]


class OutcomeStatus(StrEnum):
    """How an Ansible run ended."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    UNREACHABLE = "unreachable"
    CANCELED = "canceled"
    # The run touched a host the plan did not name (see ``Outcome.extra_hosts``): never a
    # success, whatever the play said; the caller records, audits and escalates it.
    WIDENED = "widened"


@dataclass(frozen=True)
class Outcome:
    """The typed result of one ansible-runner run."""

    status: OutcomeStatus
    started_at: float
    finished_at: float
    check_mode: bool
    rc: int | None = None
    changed_hosts: tuple[str, ...] = ()
    failed_hosts: tuple[str, ...] = ()
    unreachable_hosts: tuple[str, ...] = ()
    extra_hosts: tuple[str, ...] = ()  # touched by the run although the plan did not name them
    messages: tuple[str, ...] = ()
    artifact_dir: str | None = None

    @property
    def seconds(self) -> float:
        return self.finished_at - self.started_at


class IncidentState(StrEnum):
    """The incident lifecycle; see ``orchestrator.core.lifecycle`` for allowed transitions."""

    DETECTED = "detected"
    DIAGNOSED = "diagnosed"
    PLANNED = "planned"
    AWAITING_APPROVAL = "awaiting_approval"
    HELD = "held"  # a guardrail limit says wait; resumes by itself when the limit clears
    REMEDIATING = "remediating"
    VERIFYING = "verifying"
    RESOLVED = "resolved"
    ROLLED_BACK = "rolled_back"
    ESCALATED = "escalated"
    SUPPRESSED = "suppressed"

    @property
    def is_terminal(self) -> bool:
        return self in _TERMINAL


_TERMINAL = frozenset(
    {
        IncidentState.RESOLVED,
        IncidentState.ROLLED_BACK,
        IncidentState.ESCALATED,
        IncidentState.SUPPRESSED,
    }
)


@dataclass(frozen=True)
class Incident:
    """One fault on one host, from detection to its end state."""

    id: int
    host: str
    fault: str
    state: IncidentState
    detected_at: float
    updated_at: float
    remediation: str | None = None
    remediation_started_at: float | None = None
    remediation_finished_at: float | None = None
    resolved_at: float | None = None
    cleared_at: float | None = None
    detail: Mapping[str, Any] = field(default_factory=lambda: _frozen(None))

    @property
    def is_open(self) -> bool:
        return not self.state.is_terminal

    @property
    def subject(self) -> str:
        """Which of the host's series the incident is about ("" when host-wide)."""
        return str(self.detail.get("subject", ""))


@dataclass(frozen=True)
class Alert:
    """One alert Alertmanager posted, mapped to an inventory host: an observation that wakes a
    sweep, never an order to act (the sweep diagnoses from the metrics as they are)."""

    fingerprint: str
    status: str  # "firing" | "resolved"
    starts_at: float
    ends_at: float | None
    host: str  # the inventory name
    fault: str  # the catalog fault it names (see sources.alertmanager), else its own name
    labels: Mapping[str, str] = field(default_factory=lambda: _frozen(None))
    subject: str = ""  # the fault's subject from the alert's labels ("unit=x"), as incidents


@dataclass(frozen=True)
class AuditRecord:
    """One entry of the hash-chained audit log."""

    seq: int
    at: float
    actor: str
    action: str
    subject: str
    payload: Mapping[str, Any]
    prev_hash: str
    hash: str
