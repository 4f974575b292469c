"""Incident store: incidents, their transitions, remediation runs, and the audit chain.

Called by ``engine`` (every transition is written before the next step starts) and by the
``incidents`` and ``audit`` commands. Each write of a transition also appends an audit record in
the same database transaction, so the two never disagree.
"""

from __future__ import annotations

import hmac
import json
import logging
import threading
import time
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, func, insert, inspect, select, update
from sqlalchemy.exc import IntegrityError, OperationalError

from orchestrator.core.learning import Record
from orchestrator.core.policy import PastRun
from orchestrator.errors import AuditChainError, StoreUnavailable
from orchestrator.models import (
    Alert,
    AuditRecord,
    Incident,
    IncidentState,
    Outcome,
    OutcomeStatus,
)
from orchestrator.store import schema
from orchestrator.store.audit import (
    GENESIS,
    canonical,
    head_seal,
    record_hash,
    verify_chain,
    write_marker,
)
from orchestrator.store.upgrade import upgrade

log = logging.getLogger(__name__)
RUN_STARTED = "started"  # runs.status (finished_at = started_at) until the outcome is written


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

    def __init__(self, url: str, audit_key: bytes, actor: str = "selfheal",
                 chain_marker: Path | None = None, write_retry_s: float = 60.0) -> None:
        self.engine: Engine = create_engine(url, future=True)
        if url.startswith("sqlite"):
            # Every transaction takes SQLite's write lock up front (BEGIN IMMEDIATE), so two
            # processes (a sweep and `incidents approve`) never both append audit record N.
            event.listen(self.engine, "connect", _sqlite_pragmas)
            event.listen(self.engine, "begin", lambda conn: conn.exec_driver_sql(
                "BEGIN IMMEDIATE"))
        upgrade(self.engine)  # columns added since an older selfheal made this database
        schema.metadata.create_all(self.engine)
        self.actor = actor
        self.write_retry_s = write_retry_s
        self._alerts_lock = threading.Lock()  # record_alerts: one payload's writer at a time
        self._key = audit_key
        self._marker = chain_marker  # None: only the database itself is checked
        self._seal_unsealed_head()

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
        seal = head_seal(self._key, seq, digest)
        if last is None:
            conn.execute(insert(schema.audit_head).values(id=1, seq=seq, hash=digest, seal=seal))
        else:
            conn.execute(update(schema.audit_head).where(schema.audit_head.c.id == 1)
                         .values(seq=seq, hash=digest, seal=seal))
        if self._marker is not None and not self._marker.exists():
            write_marker(self._marker)  # before commit: a marker too early is only a false alarm

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
        """Records checked; AuditChainError if any was edited, deleted or reordered, if the
        head was rewritten, or if the log was emptied."""
        with self.engine.begin() as conn:  # head, records and the rest from one snapshot
            head = conn.execute(select(schema.audit_head)).first()
            records = self._records(conn)
            held = _keyed_history(conn, with_audit=False)
        count = verify_chain(records, self._key)
        if head is None:
            if count:
                raise AuditChainError("audit head record is missing: the log was tampered with")
            if held:
                raise AuditChainError(f"the audit log is empty but the database holds {held}; "
                                      "each of those wrote an audit record: the log was emptied")
            if self._marker is not None and self._marker.exists():
                raise AuditChainError(
                    f"the audit log is empty but {self._marker} says it has had records: the "
                    "log was emptied. If you started a new database on purpose, run `selfheal "
                    "audit init-key` to start a new chain")
            return 0
        expected = head_seal(self._key, head.seq, head.hash)
        if head.seal is None or not hmac.compare_digest(expected, head.seal):
            raise AuditChainError(f"the audit head (record {head.seq}) was rewritten: its seal "
                                  "does not match, so records at the end were deleted")
        if not records or records[-1].seq != head.seq or records[-1].hash != head.hash:
            last = records[-1].seq if records else 0
            raise AuditChainError(f"audit log ends at record {last} but its head says "
                                  f"{head.seq}: records at the end were deleted")
        return count

    def _seal_unsealed_head(self) -> None:
        """Databases made before the head was sealed (``upgrade`` added the column): seal the
        head as it is, once, and only while no marker says this install already seals (else a
        removed seal would be re-made over a forged head)."""
        if self._marker is None or self._marker.exists():
            return
        with self.engine.begin() as conn:
            head = conn.execute(select(schema.audit_head)).first()
            if head is not None and head.seal is None:
                conn.execute(update(schema.audit_head).where(schema.audit_head.c.id == 1)
                             .values(seal=head_seal(self._key, head.seq, head.hash)))
                write_marker(self._marker)

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

        def write() -> None:
            with self.engine.begin() as conn:
                changed = conn.execute(update(schema.incidents).where(
                    schema.incidents.c.id == before.id,
                    schema.incidents.c.state == before.state.value).values(**values)).rowcount
                if changed != 1:
                    from orchestrator.core.lifecycle import IllegalTransition

                    raise IllegalTransition(f"incident {before.id} was changed by another "
                                            "writer (another selfheal process?); see `selfheal "
                                            f"incidents show {before.id}`")
                if before.state != after.state:
                    conn.execute(insert(schema.transitions).values(
                        incident_id=before.id, from_state=before.state.value,
                        to_state=after.state.value, at=after.updated_at, note=note))
                    self._append_audit(conn, f"incident.{after.state.value}",
                                       f"{after.host}/{after.fault}",
                                       {"incident": before.id, "from": before.state.value,
                                        "note": note}, after.updated_at)

        self._retrying(write, f"incident {before.id} {before.state.value} -> "
                              f"{after.state.value}")
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

    def approve(self, incident: Incident, by: str, now: float, os_user: str = "") -> None:
        """Record a human's approval of the incident's current plan (its digest) and its audit
        record in one transaction; a later change of the plan needs a new approval. ``os_user``:
        who really ran the command, audited beside the name given."""
        digest = incident.detail.get("plan_digest")
        detail = {**incident.detail, "approved_by": by, "approved_at": now,
                  "approved_digest": digest}
        with self.engine.begin() as conn:
            changed = conn.execute(update(schema.incidents).where(
                schema.incidents.c.id == incident.id,
                schema.incidents.c.state == incident.state.value).values(detail=detail)).rowcount
            if changed != 1:
                from orchestrator.core.lifecycle import IllegalTransition

                raise IllegalTransition(f"incident {incident.id} was changed by another writer; "
                                        f"see `selfheal incidents show {incident.id}` and "
                                        "approve again if it still awaits approval")
            self._append_audit(conn, "incident.approved", f"{incident.host}/{incident.fault}",
                               {"incident": incident.id, "by": by, "plan_digest": digest,
                                **({"os_user": os_user} if os_user else {})}, now)

    def hand_back(self, incident: Incident, by: str, now: float) -> None:
        """A human takes an ended incident back into the loop (``incidents retry``): it stops
        blocking its host and fault, and a new incident is opened by the caller."""
        with self.engine.begin() as conn:
            conn.execute(update(schema.incidents).where(schema.incidents.c.id == incident.id)
                         .values(cleared_at=now))
            self._append_audit(conn, "incident.retried", f"{incident.host}/{incident.fault}",
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
    def start_run(self, incident_id: int | None, host: str, remediation: str, phase: str,
                  check_mode: bool, started_at: float) -> int:
        """Write "run started" before the play starts, so a run whose controller died still
        counts for the cooldown and the circuit breaker (as a run with an unknown outcome)."""
        run: list[int] = []

        def write() -> None:
            with self.engine.begin() as conn:
                key = conn.execute(insert(schema.runs).values(
                    incident_id=incident_id, host=host, remediation=remediation, phase=phase,
                    check_mode=check_mode, started_at=started_at, finished_at=started_at,
                    status=RUN_STARTED)).inserted_primary_key
                assert key is not None
                self._append_audit(conn, f"ansible.{phase}.started", f"{host}/{remediation}", {
                    "incident": incident_id, "check_mode": check_mode, "run": key[0]},
                    started_at)
                run.append(int(key[0]))

        self._retrying(write, f"run started {host}/{remediation}")
        return run[-1]

    def finish_run(self, run_id: int, host: str, remediation: str, phase: str,
                   outcome: Outcome, incident_id: int | None = None) -> None:
        """Record how a started run ended; retried while the database is busy, never dropped."""

        def write() -> None:
            with self.engine.begin() as conn:
                conn.execute(update(schema.runs).where(schema.runs.c.id == run_id).values(
                    finished_at=outcome.finished_at, status=outcome.status.value))
                self._append_audit(conn, f"ansible.{phase}", f"{host}/{remediation}", {
                    "incident": incident_id, "run": run_id, "check_mode": outcome.check_mode,
                    "status": outcome.status.value, "rc": outcome.rc,
                    "seconds": round(outcome.seconds, 3),
                    **({"extra_hosts": list(outcome.extra_hosts)} if outcome.extra_hosts
                       else {})}, outcome.finished_at)

        self._retrying(write, f"run {run_id} {host}/{remediation} {outcome.status.value}")

    def _retrying(self, write: Callable[[], None], what: str) -> None:
        """Retry a write while the database is locked or unreachable (a backup holding SQLite's
        lock, a PostgreSQL failover); after ``write_retry_s`` the error is raised, and logged
        with what was being written, so it is never silently lost."""
        deadline = time.monotonic() + self.write_retry_s
        delay = 0.1
        while True:
            try:
                write()
                return
            except OperationalError as exc:
                if time.monotonic() + delay > deadline:
                    log.error("store write failed; giving up", extra={"write": what,
                                                                      "error": str(exc)[:300]})
                    raise StoreUnavailable(f"could not write {what} to the store: "
                                           f"{str(exc)[:200]}") from exc
                log.warning("store write failed; retrying", extra={
                    "write": what, "retry_in_s": delay, "error": str(exc)[:200]})
                time.sleep(delay)
                delay = min(delay * 2, 2.0)

    def history(self, since: float) -> list[PastRun]:
        with self.engine.connect() as conn:
            runs, incidents = schema.runs, schema.incidents
            rows = conn.execute(
                select(runs, incidents.c.detail)  # the incident's subject: cooldowns per subject
                .outerjoin(incidents, incidents.c.id == runs.c.incident_id)
                .where(runs.c.started_at >= since, runs.c.check_mode.is_(False),
                       runs.c.phase == "remediate"))
            # a run still marked started either runs now or its controller died: its outcome is
            # unknown, so it counts against the breaker (never as a success)
            return [PastRun(r.host, r.remediation, r.started_at,
                            r.status != OutcomeStatus.SUCCEEDED.value,
                            str((r.detail or {}).get("subject", ""))) for r in rows]

    def mark_failed_verification(self, incident_id: int) -> None:
        """A run whose play succeeded but whose fix did not hold counts for the breaker."""
        def write() -> None:
            with self.engine.begin() as conn:
                conn.execute(update(schema.runs).where(
                    schema.runs.c.incident_id == incident_id,
                    schema.runs.c.phase == "remediate").values(status="failed"))

        self._retrying(write, f"incident {incident_id} failed verification")

    # -- alerts (selfheal serve) ------------------------------------------------------------
    def record_alerts(self, alerts: list[Alert], now: float) -> list[bool]:
        """Keep the alerts of one payload in one transaction; each is False when its
        (fingerprint, startsAt, status) was seen before (Alertmanager repeats a group on
        group_interval and repeat_interval)."""
        kept: list[bool] = []

        def write() -> None:
            kept.clear()
            # the webhook's threads queue here, not in SQLite's busy handler, whose polling
            # sleeps (up to 100 ms a time) made the load benchmark's latency tail
            with self._alerts_lock, self.engine.begin() as conn:
                for alert in alerts:
                    try:
                        with conn.begin_nested():  # a duplicate undoes only its own insert
                            conn.execute(insert(schema.alerts).values(
                                fingerprint=alert.fingerprint, starts_at=alert.starts_at,
                                status=alert.status, host=alert.host, fault=alert.fault,
                                subject=alert.subject, received_at=now, ends_at=alert.ends_at,
                                labels=dict(alert.labels)))
                    except IntegrityError:
                        kept.append(False)
                    else:
                        kept.append(True)

        if alerts:
            self._retrying(write, f"{len(alerts)} alerts")
        return kept

    def fault_started_at(self, host: str, fault: str, subject: str, before: float,
                         window_s: float = 86_400.0) -> float | None:
        """When the earliest alert about ``fault`` on ``host`` and ``subject`` that still fires
        began (its startsAt), for the time to detect; None when no alert told of it. An alert
        that names no subject tells of every subject of the host."""
        a = schema.alerts
        with self.engine.connect() as conn:
            rows = list(conn.execute(select(a.c.fingerprint, a.c.starts_at, a.c.status).where(
                a.c.host == host, a.c.fault == fault, a.c.subject.in_({subject, ""}),
                a.c.starts_at <= before, a.c.received_at >= before - window_s)))
        resolved = {(r.fingerprint, r.starts_at) for r in rows if r.status == "resolved"}
        firing = [r.starts_at for r in rows
                  if r.status == "firing" and (r.fingerprint, r.starts_at) not in resolved]
        return min(firing, default=None)

    def firing_hosts(self, hosts: Collection[str], since: float) -> set[str]:
        """Which of ``hosts`` have an alert received since ``since`` that still fires (no
        resolved notification for its fingerprint and startsAt)."""
        if not hosts:
            return set()
        a = schema.alerts
        with self.engine.connect() as conn:
            rows = list(conn.execute(select(a.c.host, a.c.fingerprint, a.c.starts_at, a.c.status)
                                     .where(a.c.host.in_(set(hosts)), a.c.received_at >= since)))
        resolved = {(r.fingerprint, r.starts_at) for r in rows if r.status == "resolved"}
        return {r.host for r in rows
                if r.status == "firing" and (r.fingerprint, r.starts_at) not in resolved}

    # -- a human's word on an incident ------------------------------------------------------
    def mark_false_positive(self, incident_id: int, by: str, now: float,
                            os_user: str = "") -> Incident:
        """A human says the incident was no fault at all: kept, counted apart in the KPIs."""
        def write() -> None:
            with self.engine.begin() as conn:
                row = conn.execute(select(schema.incidents.c.detail, schema.incidents.c.host,
                                          schema.incidents.c.fault).where(
                    schema.incidents.c.id == incident_id)).first()
                if row is None:
                    from orchestrator.errors import TargetError

                    raise TargetError(f"no incident {incident_id}; see `selfheal incidents "
                                      "list`")
                detail = {**dict(row.detail or {}),
                          "false_positive": {"by": by, "at": now}}
                conn.execute(update(schema.incidents).where(
                    schema.incidents.c.id == incident_id).values(detail=detail))
                self._append_audit(conn, "incident.false_positive", f"{row.host}/{row.fault}",
                                   {"incident": incident_id, "by": by,
                                    **({"os_user": os_user} if os_user else {})}, now)

        self._retrying(write, f"incident {incident_id} marked a false positive")
        incident = self.get(incident_id)
        assert incident is not None
        return incident

    # -- read-only counts for selfheal's own health (orchestrator.health, orchestrator.kpi) ----
    def incident_counts(self) -> dict[str, int]:
        """Incidents that still matter, by state: the open ones and the ended ones whose fault
        has not cleared (the same set the sweep works from: ``active``)."""
        counts: dict[str, int] = {}
        for incident in self.active():
            counts[incident.state.value] = counts.get(incident.state.value, 0) + 1
        return counts

    def run_counts(self, phase: str = "remediate", since: float | None = None
                   ) -> dict[str, int]:
        """Runs of ``phase`` for real (not check mode), by outcome; a remediation whose fix
        did not verify counts as failed, as for the circuit breaker; a run whose outcome is not
        written yet (in flight, or its controller died) is "started"."""
        query = (select(schema.runs.c.status, func.count()).where(
            schema.runs.c.check_mode.is_(False), schema.runs.c.phase == phase,
            schema.runs.c.started_at >= (since or 0.0)).group_by(schema.runs.c.status))
        with self.engine.connect() as conn:
            return {str(status): int(count) for status, count in conn.execute(query)}


    def all_incidents(self) -> list[Incident]:
        """Every incident, oldest first (the KPIs' raw material)."""
        query = select(schema.incidents).order_by(schema.incidents.c.id)
        with self.engine.connect() as conn:
            return [_row_to_incident(r) for r in conn.execute(query)]

    def remediation_records(self) -> dict[tuple[str, str], Record]:
        """Per (fault, remediation): incidents it fixed (verified) and ones where it ran and
        did not (rolled back or escalated); false positives left out (``core.learning``)."""
        i = schema.incidents
        ended = {IncidentState.RESOLVED.value: "ok", IncidentState.ROLLED_BACK.value: "bad",
                 IncidentState.ESCALATED.value: "bad"}
        query = select(i.c.fault, i.c.remediation, i.c.state, i.c.detail).where(
            i.c.remediation_started_at.is_not(None), i.c.state.in_(list(ended)))
        tally: dict[tuple[str, str], list[int]] = {}
        with self.engine.connect() as conn:
            for row in conn.execute(query):
                if (row.detail or {}).get("false_positive") or not row.remediation:
                    continue
                counts = tally.setdefault((row.fault, row.remediation), [0, 0])
                counts[0 if ended[row.state] == "ok" else 1] += 1
        return {key: Record(ok, bad) for key, (ok, bad) in tally.items()}

    def audit_counts(self, actions: tuple[str, ...], since: float | None = None
                     ) -> dict[str, int]:
        """How many audit records of each of ``actions`` the log holds (since ``since``)."""
        a = schema.audit
        query = (select(a.c.action, func.count()).where(a.c.action.in_(actions),
                                                        a.c.at >= (since or 0.0))
                 .group_by(a.c.action))
        with self.engine.connect() as conn:
            return {str(action): int(n) for action, n in conn.execute(query)}


def _keyed_history(conn: Any, with_audit: bool = True) -> str:
    """What the database holds that was written with the audit key ("" when nothing)."""
    tables = [schema.incidents, schema.runs, schema.transitions]
    if with_audit:
        tables += [schema.audit, schema.audit_head]
    present = set(inspect(conn).get_table_names())
    counts = [(t.name, conn.execute(select(func.count()).select_from(t)).scalar_one())
              for t in tables if t.name in present]
    return ", ".join(f"{n} rows in {name}" for name, n in counts if n)


def recorded_history(url: str) -> str:
    """What the database at ``url`` holds that needs the audit key to verify ("" when it has
    never recorded anything); read before a key may be created."""
    engine = create_engine(url, future=True)
    try:
        with engine.connect() as conn:
            return _keyed_history(conn)
    finally:
        engine.dispose()


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()
