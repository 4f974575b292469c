"""Incident store: incidents, their transitions, remediation runs, and the audit chain.

Called by ``engine`` (every transition is written before the next step starts) and by the
``incidents`` and ``audit`` commands. Each write of a transition also appends an audit record in
the same database transaction, so the two never disagree.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Engine, create_engine, event, insert, select, update

from orchestrator.core.policy import PastRun
from orchestrator.errors import AuditChainError
from orchestrator.models import AuditRecord, Incident, IncidentState, Outcome, OutcomeStatus
from orchestrator.store import schema
from orchestrator.store.audit import GENESIS, canonical, record_hash, verify_chain


def _row_to_incident(row: Any) -> Incident:
    return Incident(
        id=row.id, host=row.host, fault=row.fault, state=IncidentState(row.state),
        detected_at=row.detected_at, updated_at=row.updated_at, remediation=row.remediation,
        remediation_started_at=row.remediation_started_at,
        remediation_finished_at=row.remediation_finished_at, resolved_at=row.resolved_at,
        cleared_at=row.cleared_at, detail=dict(row.detail or {}),
    )


class Store:
    """All durable state behind one SQLAlchemy engine."""

    def __init__(self, url: str, audit_key: bytes, actor: str = "selfheal") -> None:
        self.engine: Engine = create_engine(url, future=True)
        if url.startswith("sqlite"):
            # Every transaction takes SQLite's write lock up front (BEGIN IMMEDIATE), so two
            # processes (a sweep and `incidents approve`) never both append audit record N.
            event.listen(self.engine, "connect", _sqlite_pragmas)
            event.listen(self.engine, "begin", lambda conn: conn.exec_driver_sql(
                "BEGIN IMMEDIATE"))
        schema.metadata.create_all(self.engine)
        self.actor = actor
        self._key = audit_key

    # -- audit -------------------------------------------------------------------------------
    def _append_audit(self, conn: Any, action: str, subject: str,
                      payload: Mapping[str, Any], at: float) -> None:
        # PostgreSQL: lock the head row so concurrent appenders queue (SQLite: BEGIN IMMEDIATE)
        conn.execute(select(schema.audit_head.c.id).with_for_update())
        last = conn.execute(select(schema.audit.c.seq, schema.audit.c.hash)
                            .order_by(schema.audit.c.seq.desc()).limit(1)).first()
        seq = (last.seq + 1) if last else 1
        prev = last.hash if last else GENESIS
        body = canonical(payload)
        digest = record_hash(self._key, seq, at, self.actor, action, subject, body, prev)
        conn.execute(insert(schema.audit).values(
            seq=seq, at=at, actor=self.actor, action=action, subject=subject, payload=body,
            prev_hash=prev, hash=digest))
        if last is None:
            conn.execute(insert(schema.audit_head).values(id=1, seq=seq, hash=digest))
        else:
            conn.execute(update(schema.audit_head).where(schema.audit_head.c.id == 1)
                         .values(seq=seq, hash=digest))

    def audit(self, action: str, subject: str, payload: Mapping[str, Any] | None = None,
              at: float | None = None) -> None:
        with self.engine.begin() as conn:
            self._append_audit(conn, action, subject, payload or {}, at or time.time())

    def audit_records(self) -> list[AuditRecord]:
        with self.engine.connect() as conn:
            return self._records(conn)

    @staticmethod
    def _records(conn: Any) -> list[AuditRecord]:
        return [AuditRecord(seq=row.seq, at=row.at, actor=row.actor, action=row.action,
                            subject=row.subject, payload=json.loads(row.payload),
                            prev_hash=row.prev_hash, hash=row.hash)
                for row in conn.execute(select(schema.audit).order_by(schema.audit.c.seq))]

    def verify_audit(self) -> int:
        """Records checked; AuditChainError if any was edited, deleted or reordered."""
        with self.engine.begin() as conn:  # head and records from one snapshot
            head = conn.execute(select(schema.audit_head)).first()
            records = self._records(conn)
        count = verify_chain(records, self._key)
        if head is None:
            if count:
                raise AuditChainError("audit head record is missing: the log was tampered with")
            return 0
        if not records or records[-1].seq != head.seq or records[-1].hash != head.hash:
            last = records[-1].seq if records else 0
            raise AuditChainError(f"audit log ends at record {last} but its head says "
                                  f"{head.seq}: records at the end were deleted")
        return count

    # -- incidents ---------------------------------------------------------------------------
    def open_incident(self, host: str, fault: str, now: float,
                      detail: Mapping[str, Any] | None = None) -> Incident:
        with self.engine.begin() as conn:
            key = conn.execute(insert(schema.incidents).values(
                host=host, fault=fault, state=IncidentState.DETECTED.value, detected_at=now,
                updated_at=now, detail=dict(detail or {}))).inserted_primary_key
            assert key is not None
            new_id = key[0]
            conn.execute(insert(schema.transitions).values(
                incident_id=new_id, from_state=None, to_state=IncidentState.DETECTED.value,
                at=now, note="detected"))
            self._append_audit(conn, "incident.detected", f"{host}/{fault}",
                               {"incident": new_id, **dict(detail or {})}, now)
        incident = self.get(new_id)
        assert incident is not None
        return incident

    def save_transition(self, before: Incident, after: Incident, note: str = "") -> Incident:
        """Persist ``after`` (made by ``lifecycle.advance``); refuses if another writer moved it."""
        values = {
            "state": after.state.value, "updated_at": after.updated_at,
            "remediation": after.remediation,
            "remediation_started_at": after.remediation_started_at,
            "remediation_finished_at": after.remediation_finished_at,
            "resolved_at": after.resolved_at, "cleared_at": after.cleared_at,
            "detail": dict(after.detail),
        }
        with self.engine.begin() as conn:
            changed = conn.execute(update(schema.incidents).where(
                schema.incidents.c.id == before.id,
                schema.incidents.c.state == before.state.value).values(**values)).rowcount
            if changed != 1:
                from orchestrator.core.lifecycle import IllegalTransition

                raise IllegalTransition(f"incident {before.id} was changed by another writer")
            if before.state != after.state:
                conn.execute(insert(schema.transitions).values(
                    incident_id=before.id, from_state=before.state.value,
                    to_state=after.state.value, at=after.updated_at, note=note))
                self._append_audit(conn, f"incident.{after.state.value}",
                                   f"{after.host}/{after.fault}",
                                   {"incident": before.id, "from": before.state.value,
                                    "note": note}, after.updated_at)
        return after

    def get(self, incident_id: int) -> Incident | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(schema.incidents)
                               .where(schema.incidents.c.id == incident_id)).first()
        return _row_to_incident(row) if row else None

    def incidents(self, limit: int = 100, host: str | None = None) -> list[Incident]:
        query = select(schema.incidents).order_by(schema.incidents.c.id.desc()).limit(limit)
        if host:
            query = query.where(schema.incidents.c.host == host)
        with self.engine.connect() as conn:
            return [_row_to_incident(r) for r in conn.execute(query)]

    def active(self) -> list[Incident]:
        """Open incidents, plus ended ones (other than resolved) whose fault has not cleared:
        an escalated, rolled-back or suppressed fault is not taken up again while it lasts."""
        open_states = [s.value for s in IncidentState if not s.is_terminal]
        held = [IncidentState.ESCALATED.value, IncidentState.ROLLED_BACK.value,
                IncidentState.SUPPRESSED.value]
        query = select(schema.incidents).where(
            (schema.incidents.c.state.in_(open_states))
            | (schema.incidents.c.state.in_(held) & schema.incidents.c.cleared_at.is_(None)))
        with self.engine.connect() as conn:
            return [_row_to_incident(r) for r in conn.execute(query)]

    def approve(self, incident: Incident, by: str, now: float) -> None:
        """Record a human's approval and its audit record in one transaction."""
        detail = {**incident.detail, "approved_by": by, "approved_at": now}
        with self.engine.begin() as conn:
            changed = conn.execute(update(schema.incidents).where(
                schema.incidents.c.id == incident.id,
                schema.incidents.c.state == incident.state.value).values(detail=detail)).rowcount
            if changed != 1:
                from orchestrator.core.lifecycle import IllegalTransition

                raise IllegalTransition(f"incident {incident.id} was changed by another writer")
            self._append_audit(conn, "incident.approved", f"{incident.host}/{incident.fault}",
                               {"incident": incident.id, "by": by}, now)

    def mark_cleared(self, incident: Incident, now: float) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(schema.incidents).where(schema.incidents.c.id == incident.id)
                         .values(cleared_at=now))
            self._append_audit(conn, "incident.cleared", f"{incident.host}/{incident.fault}",
                               {"incident": incident.id}, now)

    def transitions(self, incident_id: int) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(schema.transitions)
                                .where(schema.transitions.c.incident_id == incident_id)
                                .order_by(schema.transitions.c.id))
            return [{"from": r.from_state, "to": r.to_state, "at": r.at, "note": r.note}
                    for r in rows]

    # -- runs --------------------------------------------------------------------------------
    def record_run(self, incident_id: int | None, host: str, remediation: str, phase: str,
                   outcome: Outcome) -> None:
        with self.engine.begin() as conn:
            conn.execute(insert(schema.runs).values(
                incident_id=incident_id, host=host, remediation=remediation, phase=phase,
                check_mode=outcome.check_mode, started_at=outcome.started_at,
                finished_at=outcome.finished_at, status=outcome.status.value))
            self._append_audit(conn, f"ansible.{phase}", f"{host}/{remediation}", {
                "incident": incident_id, "check_mode": outcome.check_mode,
                "status": outcome.status.value, "rc": outcome.rc,
                "seconds": round(outcome.seconds, 3)}, outcome.finished_at)

    def history(self, since: float) -> list[PastRun]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(schema.runs).where(
                schema.runs.c.started_at >= since, schema.runs.c.check_mode.is_(False),
                schema.runs.c.phase == "remediate"))
            return [PastRun(r.host, r.remediation, r.started_at,
                            r.status != OutcomeStatus.SUCCEEDED.value) for r in rows]

    def mark_failed_verification(self, incident_id: int) -> None:
        """A run whose play succeeded but whose fix did not hold counts for the breaker."""
        with self.engine.begin() as conn:
            conn.execute(update(schema.runs).where(
                schema.runs.c.incident_id == incident_id,
                schema.runs.c.phase == "remediate").values(status="failed"))

    # -- read-only counts for selfheal's own health (orchestrator.health) ----------------------
    def incident_counts(self) -> dict[str, int]:
        """Incidents that still matter, by state: the open ones and the ended ones whose fault
        has not cleared (the same set the sweep works from: ``active``)."""
        counts: dict[str, int] = {}
        for incident in self.active():
            counts[incident.state.value] = counts.get(incident.state.value, 0) + 1
        return counts

    def run_counts(self) -> dict[str, int]:
        """Remediation runs for real (not check mode, not rollbacks), by outcome;
        a run whose fix did not verify counts as failed, as for the circuit breaker."""
        from sqlalchemy import func

        query = (select(schema.runs.c.status, func.count()).where(
            schema.runs.c.check_mode.is_(False), schema.runs.c.phase == "remediate")
            .group_by(schema.runs.c.status))
        with self.engine.connect() as conn:
            return {str(status): int(count) for status, count in conn.execute(query)}


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()
