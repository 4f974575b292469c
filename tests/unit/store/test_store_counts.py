"""The read-only counts behind selfheal's health textfile, from a real SQLite store."""

from __future__ import annotations

from pathlib import Path

from orchestrator.core.lifecycle import advance
from orchestrator.models import IncidentState as S, Outcome, OutcomeStatus
from orchestrator.store.db import Store
from tests.unit.store.test_store import KEY, heal_one


def test_incidents_that_still_matter_are_counted_by_state(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'state.db'}", KEY)
    heal_one(store)  # resolved: no longer counted
    open_one = store.open_incident("vps1", "disk_full", 20.0)
    lasting = store.open_incident("vps3", "service_crash", 20.0)
    for state in (S.DIAGNOSED, S.ESCALATED):
        lasting = store.save_transition(lasting, advance(lasting, state, 21.0))
    cleared = store.open_incident("vps4", "service_crash", 20.0)
    for state in (S.DIAGNOSED, S.ESCALATED):
        cleared = store.save_transition(cleared, advance(cleared, state, 21.0))
    store.mark_cleared(cleared, 30.0)  # escalated, but the fault went away
    assert open_one.state is S.DETECTED
    assert store.incident_counts() == {"detected": 1, "escalated": 1}


def record(store: Store, phase: str, outcome: Outcome) -> None:
    run = store.start_run(None, "vps2", "service_restart", phase, outcome.check_mode,
                          outcome.started_at)
    store.finish_run(run, "vps2", "service_restart", phase, outcome)


def test_remediation_runs_are_counted_by_outcome(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'state.db'}", KEY)
    heal_one(store)  # one succeeded remediate run
    record(store, "remediate", Outcome(OutcomeStatus.UNREACHABLE, 20.0, 21.0, False))
    record(store, "remediate", Outcome(OutcomeStatus.SUCCEEDED, 20.0, 21.0, True))  # check
    record(store, "rollback", Outcome(OutcomeStatus.SUCCEEDED, 22.0, 23.0, False))
    store.start_run(None, "vps1", "service_restart", "remediate", False, 30.0)  # in flight
    assert store.run_counts() == {"succeeded": 1, "unreachable": 1, "started": 1}
    assert Store(f"sqlite:///{tmp_path / 'empty.db'}", KEY).run_counts() == {}
