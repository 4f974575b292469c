"""The incident store writes every transition, and the audit chain catches tampering."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from orchestrator.core.lifecycle import IllegalTransition, advance
from orchestrator.errors import AuditChainError
from orchestrator.models import IncidentState as S, Outcome, OutcomeStatus
from orchestrator.store.audit import chain_marker, create_key, read_key
from orchestrator.store.db import Store

KEY = b"k" * 32


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(f"sqlite:///{tmp_path / 'state.db'}", KEY)


def heal_one(store: Store) -> int:
    i = store.open_incident("vps2", "service_crash", 10.0, {"evidence": ["up == 0"]})
    for n, state in enumerate((S.DIAGNOSED, S.PLANNED, S.REMEDIATING, S.VERIFYING, S.RESOLVED)):
        i = store.save_transition(i, advance(i, state, 11.0 + n), f"to {state}")
    run = store.start_run(i.id, "vps2", "service_restart", "remediate", False, 13.0)
    store.finish_run(run, "vps2", "service_restart", "remediate",
                     Outcome(OutcomeStatus.SUCCEEDED, 13.0, 14.5, False, rc=0), i.id)
    return i.id


def test_transitions_and_audit_are_written(store: Store) -> None:
    iid = heal_one(store)
    incident = store.get(iid)
    assert incident is not None and incident.state is S.RESOLVED
    assert [t["to"] for t in store.transitions(iid)] == [
        "detected", "diagnosed", "planned", "remediating", "verifying", "resolved"]
    assert store.verify_audit() == 8  # 6 incident records + run started + run finished
    assert store.history(0)[0].host == "vps2"


def test_stale_writer_is_refused(store: Store) -> None:
    i = store.open_incident("vps1", "service_crash", 1.0)
    store.save_transition(i, advance(i, S.DIAGNOSED, 2.0))
    with pytest.raises(IllegalTransition, match="another writer"):
        store.save_transition(i, advance(i, S.ESCALATED, 3.0))


def test_active_keeps_escalated_until_cleared(store: Store) -> None:
    i = store.open_incident("vps1", "service_crash", 1.0)
    i = store.save_transition(i, advance(i, S.ESCALATED, 2.0))
    assert [a.id for a in store.active()] == [i.id]
    store.mark_cleared(i, 3.0)
    assert store.active() == []


def _tamper(path: Path, sql: str) -> None:
    with sqlite3.connect(path) as conn:
        conn.executescript(sql)


@pytest.mark.parametrize("sql, expected", [
    ("UPDATE audit SET subject = 'vps9/service_crash' WHERE seq = 3", "record 3 .* was edited"),
    ("DELETE FROM audit WHERE seq = 4", "record 4 is missing"),
    ("DELETE FROM audit WHERE seq = 8", "records at the end were deleted"),
    ("UPDATE audit SET seq = -1 WHERE seq = 2; UPDATE audit SET seq = 2 WHERE seq = 3; "
     "UPDATE audit SET seq = 3 WHERE seq = -1", "record 2: previous-hash link broken"),
])
def test_audit_verify_fails_on_tampering(tmp_path: Path, sql: str, expected: str) -> None:
    db = tmp_path / "state.db"
    store = Store(f"sqlite:///{db}", KEY)
    heal_one(store)
    assert store.verify_audit() == 8
    _tamper(db, sql)
    with pytest.raises(AuditChainError, match=expected):
        store.verify_audit()


def test_concurrent_appends_keep_the_chain(tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    store = Store(f"sqlite:///{tmp_path / 'state.db'}", KEY)
    other = Store(f"sqlite:///{tmp_path / 'state.db'}", KEY)  # a second writer, as a CLI would be
    with ThreadPoolExecutor(max_workers=6) as pool:
        list(pool.map(lambda i: (store if i % 2 else other).audit("test", f"s{i}"), range(120)))
    assert store.verify_audit() == 120


def test_approval_is_recorded_with_its_audit_record(store: Store) -> None:
    i = store.open_incident("vps1", "service_crash", 1.0)
    for state in (S.DIAGNOSED, S.PLANNED, S.AWAITING_APPROVAL):
        i = store.save_transition(i, advance(i, state, 2.0))
    store.approve(i, "alice", 3.0)
    got = store.get(i.id)
    assert got is not None and got.detail["approved_by"] == "alice"
    assert store.audit_records()[-1].action == "incident.approved"
    assert store.verify_audit() == 5


def test_recomputed_chain_without_the_key_is_caught(tmp_path: Path) -> None:
    """Someone with write access to the database but not the key rewrites record 2 and
    re-hashes the whole chain with a key of their own: verification still fails."""
    db = tmp_path / "state.db"
    store = Store(f"sqlite:///{db}", KEY)
    heal_one(store)
    forger = Store(f"sqlite:///{tmp_path / 'forged.db'}", b"x" * 32)
    for r in store.audit_records():
        forger.audit(r.action, r.subject if r.seq != 2 else "vps9/service_crash",
                     r.payload, r.at)
    _tamper(db, "DELETE FROM audit; DELETE FROM audit_head; ATTACH DATABASE "
                f"'{tmp_path / 'forged.db'}' AS f; INSERT INTO audit SELECT * FROM f.audit; "
                "INSERT INTO audit_head SELECT * FROM f.audit_head;")
    with pytest.raises(AuditChainError, match=r"record 1 .* was edited"):
        store.verify_audit()


def test_key_file_is_created_private_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "state" / "audit.key"
    assert read_key(path) is None
    key = create_key(path)
    assert len(key) == 64 and path.stat().st_mode & 0o777 == 0o600
    assert read_key(path) == key and create_key(path) == key  # a second creator gets the first
    path.write_bytes(b"short")
    with pytest.raises(AuditChainError, match="shorter than 32 bytes"):
        read_key(path)


def test_deleting_the_tail_and_rewriting_the_head_is_caught(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    store = Store(f"sqlite:///{db}", KEY)
    heal_one(store)
    _tamper(db, "DELETE FROM audit WHERE seq >= 7; UPDATE audit_head SET seq = 6, "
                "hash = (SELECT hash FROM audit WHERE seq = 6)")
    assert [r.seq for r in store.audit_records()] == [1, 2, 3, 4, 5, 6]  # a valid short chain
    with pytest.raises(AuditChainError, match=r"head \(record 6\) was rewritten"):
        store.verify_audit()


def test_an_emptied_log_is_caught_by_the_incidents_it_recorded(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    store = Store(f"sqlite:///{db}", KEY)
    heal_one(store)
    _tamper(db, "DELETE FROM audit; DELETE FROM audit_head")
    with pytest.raises(AuditChainError, match="empty but the database holds 1 rows in incidents"):
        store.verify_audit()


def test_an_emptied_database_is_caught_by_the_marker(tmp_path: Path) -> None:
    db, marker = tmp_path / "state.db", chain_marker(tmp_path / "audit.key")
    store = Store(f"sqlite:///{db}", KEY, chain_marker=marker)
    assert store.verify_audit() == 0 and not marker.exists()  # new and empty: intact
    heal_one(store)
    assert marker.exists()
    _tamper(db, "DELETE FROM audit; DELETE FROM audit_head; DELETE FROM incidents; "
                "DELETE FROM transitions; DELETE FROM runs")
    with pytest.raises(AuditChainError, match=r"says it has had records.*audit init-key"):
        store.verify_audit()


def test_a_database_from_before_the_seal_is_sealed_once(tmp_path: Path) -> None:
    db, marker = tmp_path / "state.db", chain_marker(tmp_path / "audit.key")
    heal_one(Store(f"sqlite:///{db}", KEY, chain_marker=marker))
    _tamper(db, "ALTER TABLE audit_head DROP COLUMN seal")
    marker.unlink()  # as an install from before the seal and the marker
    store = Store(f"sqlite:///{db}", KEY, chain_marker=marker)
    assert store.verify_audit() == 8 and marker.exists()


def test_a_removed_seal_is_not_made_again(tmp_path: Path) -> None:
    """With the marker in place the store already sealed: a dropped seal column is tampering,
    and re-sealing would bless a forged head."""
    db, marker = tmp_path / "state.db", chain_marker(tmp_path / "audit.key")
    heal_one(Store(f"sqlite:///{db}", KEY, chain_marker=marker))
    _tamper(db, "DELETE FROM audit WHERE seq >= 7; ALTER TABLE audit_head DROP COLUMN seal; "
                "UPDATE audit_head SET seq = 6, hash = (SELECT hash FROM audit WHERE seq = 6)")
    store = Store(f"sqlite:///{db}", KEY, chain_marker=marker)
    with pytest.raises(AuditChainError, match="was rewritten"):
        store.verify_audit()
