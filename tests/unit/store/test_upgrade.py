"""A store made by an older selfheal opens with this one: columns added since are added in place
with their defaults (existing rows kept), and what cannot be added is refused by name.

The old database here is the current schema minus the columns added after the first release
(``alerts.subject``, ``audit_head.seal``): the state a team upgrading from it has. Before the
upgrade step, such a store made every sweep fail with ``no such column: alerts.subject``.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import Column, Integer, MetaData, Table, create_engine

from orchestrator.errors import StoreSchemaError
from orchestrator.store import schema
from orchestrator.store.db import Store
from orchestrator.store.upgrade import add_column_sql

KEY = b"k" * 32
ADDED_SINCE = {"alerts": {"subject"}, "audit_head": {"seal"}}


def old_database(path: Path) -> None:
    """The schema as an older release made it, with an alert and an incident in it."""
    old = MetaData()
    for table in schema.metadata.sorted_tables:
        Table(table.name, old, *[Column(c.name, c.type, primary_key=c.primary_key,
                                        nullable=c.nullable) for c in table.columns
                                 if c.name not in ADDED_SINCE.get(table.name, set())])
    engine = create_engine(f"sqlite:///{path}")
    old.create_all(engine)
    engine.dispose()
    with sqlite3.connect(path) as db:
        db.execute("INSERT INTO alerts (fingerprint, starts_at, status, host, fault, "
                   "received_at, labels) VALUES ('f1', 100.0, 'firing', 'vps1', "
                   "'service_crash', 101.0, '{}')")
        db.execute("INSERT INTO incidents (host, fault, state, detected_at, updated_at, detail) "
                   "VALUES ('vps1', 'service_crash', 'escalated', 100.0, 120.0, '{}')")


def columns(path: Path, table: str) -> set[str]:
    with sqlite3.connect(path) as db:
        return {row[1] for row in db.execute(f"PRAGMA table_info({table})")}


def test_an_older_store_gains_the_new_columns_and_keeps_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "selfheal.db"
    old_database(path)
    assert "subject" not in columns(path, "alerts")
    store = Store(f"sqlite:///{path}", KEY)
    assert {"subject"} <= columns(path, "alerts") and {"seal"} <= columns(path, "audit_head")
    # the query every sweep of `serve` makes, which failed on such a store
    assert store.fault_started_at("vps1", "service_crash", "unit=a.service", 200.0) == 100.0
    assert store.firing_hosts({"vps1"}, 0.0) == {"vps1"}
    (incident,) = store.incidents(limit=5, host="vps1")
    assert incident.fault == "service_crash" and incident.detail == {}
    # and it keeps working as a current store: an incident opens and is audited
    opened = store.open_incident("vps2", "disk_full", 300.0, {})
    assert store.get(opened.id) is not None and store.verify_audit() >= 1


def test_opening_a_current_store_again_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "selfheal.db"
    Store(f"sqlite:///{path}", KEY).open_incident("vps1", "disk_full", 1.0, {})
    before = {t.name: columns(path, t.name) for t in schema.metadata.sorted_tables}
    store = Store(f"sqlite:///{path}", KEY)
    assert {t.name: columns(path, t.name) for t in schema.metadata.sorted_tables} == before
    assert store.verify_audit() == 1


def test_a_new_column_no_old_row_can_fill_is_refused_by_name() -> None:
    engine = create_engine("sqlite://")
    column = Column("priority", Integer, nullable=False)
    with pytest.raises(StoreSchemaError, match=r"incidents\.priority.*state\.dir"):
        add_column_sql(engine, "incidents", column)
    defaulted = Column("tries", Integer, nullable=False, default=0)
    assert add_column_sql(engine, "incidents", defaulted).endswith("DEFAULT 0 NOT NULL")
