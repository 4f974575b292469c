"""The incident state machine allows the documented path and nothing else."""

from __future__ import annotations

import pytest

from orchestrator.core.lifecycle import ALLOWED, IllegalTransition, advance
from orchestrator.models import Incident, IncidentState as S


def incident(state: S) -> Incident:
    return Incident(id=1, host="vps1", fault="service_crash", state=state, detected_at=0,
                    updated_at=0)


def test_happy_path() -> None:
    i = incident(S.DETECTED)
    for nxt in (S.DIAGNOSED, S.PLANNED, S.REMEDIATING, S.VERIFYING, S.RESOLVED):
        i = advance(i, nxt, 1.0)
    assert i.state is S.RESOLVED and not i.is_open


def test_terminal_states_are_final() -> None:
    for state in S:
        if state.is_terminal:
            assert ALLOWED[state] == frozenset()
            with pytest.raises(IllegalTransition):
                advance(incident(state), S.REMEDIATING, 1.0)


def test_cannot_skip_verification() -> None:
    with pytest.raises(IllegalTransition, match="remediating -> resolved"):
        advance(incident(S.REMEDIATING), S.RESOLVED, 1.0)
