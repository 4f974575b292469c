"""Runs are written before the play starts and their outcome is never dropped."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest

from orchestrator.errors import StoreUnavailable
from orchestrator.models import Outcome, OutcomeStatus
from orchestrator.store.db import Store

KEY = b"k" * 32
DONE = Outcome(OutcomeStatus.SUCCEEDED, 100.0, 101.0, False, rc=0)


def test_a_started_run_counts_before_its_outcome_is_known(tmp_path: Path) -> None:
    """A controller that died mid-play leaves a started run: it counts for the cooldown and,
    its outcome unknown, against the circuit breaker."""
    store = Store(f"sqlite:///{tmp_path / 'state.db'}", KEY)
    store.start_run(1, "vps1", "service_restart", "remediate", False, 100.0)
    (past,) = store.history(0)
    assert (past.host, past.started_at, past.failed) == ("vps1", 100.0, True)
    assert store.verify_audit() == 1


def test_check_mode_runs_do_not_count(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'state.db'}", KEY)
    store.start_run(None, "vps1", "service_restart", "remediate", True, 100.0)
    assert store.history(0) == []


def test_outcome_write_waits_out_a_locked_database(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    store = Store(f"sqlite:///{db}", KEY, write_retry_s=30)
    run = store.start_run(1, "vps1", "service_restart", "remediate", False, 100.0)
    holder = sqlite3.connect(db, timeout=0, isolation_level=None, check_same_thread=False)
    holder.execute("PRAGMA busy_timeout=0")
    holder.execute("BEGIN IMMEDIATE")  # another process holds the write lock (a backup, say)
    released = threading.Timer(6.5, holder.execute, ("COMMIT",))  # past SQLite's own 5 s wait
    released.start()
    try:
        store.finish_run(run, "vps1", "service_restart", "remediate", DONE, 1)
    finally:
        released.join()
        holder.close()
    (past,) = store.history(0)
    assert past.failed is False  # the outcome made it in after the lock was released
    assert store.verify_audit() == 2


def test_outcome_write_that_never_succeeds_is_an_error_not_silence(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    store = Store(f"sqlite:///{db}", KEY, write_retry_s=0.5)
    run = store.start_run(1, "vps1", "service_restart", "remediate", False, 100.0)
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    started = time.monotonic()
    try:
        with pytest.raises(StoreUnavailable, match=r"run .* vps1/service_restart succeeded"):
            store.finish_run(run, "vps1", "service_restart", "remediate", DONE, 1)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert time.monotonic() - started >= 0.5  # it retried before giving up
