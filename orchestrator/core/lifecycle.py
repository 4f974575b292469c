"""The incident state machine: which transitions are allowed.

Called by ``engine`` (and the approval commands) before every state change; the store writes the
transition before the next step starts, so a controller that dies mid-way can resume.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from orchestrator.errors import PermanentError
from orchestrator.models import Incident, IncidentState as S

ALLOWED: dict[S, frozenset[S]] = {
    S.DETECTED: frozenset({S.DIAGNOSED, S.ESCALATED, S.SUPPRESSED}),
    S.DIAGNOSED: frozenset({S.PLANNED, S.ESCALATED, S.SUPPRESSED}),
    S.PLANNED: frozenset({S.AWAITING_APPROVAL, S.HELD, S.REMEDIATING, S.ESCALATED,
                          S.SUPPRESSED, S.RESOLVED}),
    S.AWAITING_APPROVAL: frozenset({S.HELD, S.REMEDIATING, S.ESCALATED, S.SUPPRESSED,
                                    S.RESOLVED}),
    # held: a limit says wait; it resumes (or asks, or escalates) when a sweep finds it allowed
    S.HELD: frozenset({S.AWAITING_APPROVAL, S.REMEDIATING, S.ESCALATED, S.SUPPRESSED,
                       S.RESOLVED}),
    S.REMEDIATING: frozenset({S.VERIFYING, S.ROLLED_BACK, S.ESCALATED}),
    S.VERIFYING: frozenset({S.RESOLVED, S.ROLLED_BACK, S.ESCALATED}),
    S.RESOLVED: frozenset(),
    S.ROLLED_BACK: frozenset(),
    S.ESCALATED: frozenset(),
    S.SUPPRESSED: frozenset(),
}


class IllegalTransition(PermanentError):
    """A state change the lifecycle does not allow (a bug or a race between controllers)."""


def advance(incident: Incident, to: S, now: float, **changes: Any) -> Incident:
    """The incident in state ``to``; IllegalTransition if the lifecycle forbids it."""
    if to not in ALLOWED[incident.state]:
        raise IllegalTransition(f"incident {incident.id}: {incident.state} -> {to} is not allowed")
    return replace(incident, state=to, updated_at=now, **changes)
