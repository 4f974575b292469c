"""SQLAlchemy tables for the store; one place for the schema, used by ``store.db`` and ``audit``."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

incidents = Table(
    "incidents", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("host", String(255), nullable=False, index=True),
    Column("fault", String(64), nullable=False),
    Column("state", String(32), nullable=False, index=True),
    Column("remediation", String(64)),
    Column("detected_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("remediation_started_at", Float),
    Column("remediation_finished_at", Float),
    Column("resolved_at", Float),
    Column("cleared_at", Float),
    Column("detail", JSON, nullable=False, default=dict),
)

transitions = Table(
    "transitions", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("incident_id", Integer, nullable=False, index=True),
    Column("from_state", String(32)),
    Column("to_state", String(32), nullable=False),
    Column("at", Float, nullable=False),
    Column("note", Text, nullable=False, default=""),
)

runs = Table(
    "runs", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("incident_id", Integer, index=True),
    Column("host", String(255), nullable=False),
    Column("remediation", String(64), nullable=False),
    Column("phase", String(16), nullable=False),
    Column("check_mode", Boolean, nullable=False),
    Column("started_at", Float, nullable=False),
    Column("finished_at", Float, nullable=False),
    Column("status", String(16), nullable=False),
)

# Alerts Alertmanager posted to `selfheal serve`: observations, not actions (no audit record).
# One row per (fingerprint, startsAt, status): Alertmanager re-sends a group on group_interval
# and repeat_interval, and the unique key turns each repeat into a duplicate.
alerts = Table(
    "alerts", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("fingerprint", String(64), nullable=False),
    Column("starts_at", Float, nullable=False),
    Column("status", String(16), nullable=False),
    Column("host", String(255), nullable=False, index=True),
    Column("fault", String(128), nullable=False),
    Column("subject", Text, nullable=False, default=""),  # label values: no length cap
    Column("received_at", Float, nullable=False),
    Column("ends_at", Float),
    Column("labels", JSON, nullable=False, default=dict),
    UniqueConstraint("fingerprint", "starts_at", "status", name="alerts_once"),
)

audit = Table(
    "audit", metadata,
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("at", Float, nullable=False),
    Column("actor", String(64), nullable=False),
    Column("action", String(64), nullable=False),
    Column("subject", String(255), nullable=False),
    Column("payload", Text, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
)

# The newest record's seq and hash, updated in the same transaction as each append, so a
# deleted tail is caught too (the chain alone cannot tell a truncated log from a short one).
# ``seal`` is an HMAC over seq and hash with the audit key, so the head cannot be rewritten to
# match a truncated log. Nullable only for databases made before it existed (see store.db).
audit_head = Table(
    "audit_head", metadata,
    Column("id", Integer, primary_key=True),
    Column("seq", Integer, nullable=False),
    Column("hash", String(64), nullable=False),
    Column("seal", String(64)),
)
