"""One sweep of the closed loop: observe, diagnose, plan, guard, execute, verify, record.

Called by ``selfheal sweep`` (once, or every N seconds), by the lab demo and by the benchmarks.
Level-triggered: every sweep looks at the fleet as it is now. Every incident transition is written
to the store before the next step starts; an incident left mid-remediation by a controller that
died is re-verified, never run twice.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

from orchestrator.core.diagnose import HostVerdict, diagnose
from orchestrator.core.learning import Records
from orchestrator.core.lifecycle import IllegalTransition, advance
from orchestrator.core.plan import build_plan, first_remediation, plan_digest
from orchestrator.core.policy import PastRun, PolicyState, decide
from orchestrator.core.signals import Signal
from orchestrator.detection import AnomalyReport, AnomalyWatch
from orchestrator.errors import PermanentError, SourceUnavailable, TargetError, TemporaryError
from orchestrator.execute.inventory import Inventory
from orchestrator.execute.runner import AnsibleExecutor, Phase
from orchestrator.explainer import Analysis, Explainer, not_queued
from orchestrator.models import (
    Diagnosis,
    Finding,
    Health,
    Incident,
    IncidentState as S,
    Outcome,
    OutcomeStatus,
    Plan,
    Verdict,
)
from orchestrator.rules import Rules
from orchestrator.sources.prometheus import PrometheusSource
from orchestrator.store.db import Store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Action:
    """What the sweep did (or would do) about one diagnosis."""

    host: str
    fault: str
    verdict: str
    state: str
    remediation: str | None = None
    incident_id: int | None = None
    reasons: tuple[str, ...] = ()
    detected_at: float | None = None
    remediation_started_at: float | None = None
    remediation_finished_at: float | None = None
    resolved_at: float | None = None
    subject: str = ""  # which of the host's series ("unit=nginx.service"); "" when host-wide

    @property
    def needs_human(self) -> bool:
        return self.state in (S.ESCALATED, S.AWAITING_APPROVAL, S.ROLLED_BACK, S.HELD) or (
            self.verdict in (Verdict.REFUSE, Verdict.HOLD, "failed", "unknown"))


@dataclass(frozen=True)
class SweepReport:
    started_at: float
    finished_at: float
    verdicts: tuple[HostVerdict, ...]
    actions: tuple[Action, ...]
    refused: tuple[str, ...] = ()
    source_error: str | None = None
    dry_run: bool = False
    anomalies: AnomalyReport | None = None  # learned detectors: advisory, not acted on
    # the hosts this sweep covered (an alert's); None: the whole fleet. ``verdicts`` and
    # ``actions`` are those hosts' only, the guardrails counted the whole fleet
    hosts: tuple[str, ...] | None = None

    @property
    def exit_code(self) -> int:
        """0 all healthy or healed, 1 something needs a human (incl. unknown data)."""
        if self.source_error or any(v.health is Health.UNKNOWN for v in self.verdicts):
            return 1
        if any(a.needs_human for a in self.actions):
            return 1
        if self.dry_run:
            return 1 if any(v.diagnoses for v in self.verdicts) else 0
        healed = {(a.host, a.fault) for a in self.actions if a.state == S.RESOLVED}
        still = [d for v in self.verdicts for d in v.diagnoses if (d.host, d.fault) not in healed]
        return 1 if still and not all(self._in_hand(d) for d in still) else 0

    def _in_hand(self, d: Diagnosis) -> bool:
        return any(a.host == d.host and a.fault == d.fault and a.verdict == Verdict.DEFER
                   for a in self.actions)


@dataclass(frozen=True)
class Admitted:
    """A plan the guardrails let through: run it (or check it, in a dry run)."""

    incident: Incident | None
    plan: Plan


@dataclass(frozen=True)
class _SweepView:
    """What every admission in one sweep shares, read from the store once."""

    broken: int
    unknown: int
    fleet: int
    dry_run: bool
    active: Mapping[tuple[str, str, str], Incident]  # (host, fault, subject)
    history: list[PastRun]
    records: Records  # how each remediation did per fault: which to try first


@dataclass
class Controller:
    """The loop's wiring; every part is passed in so tests build their own."""

    rules: Rules
    inventory: Inventory
    source: PrometheusSource
    executor: AnsibleExecutor
    store: Store
    clock: Callable[[], float] = time.time
    sleep: Callable[[float], None] = time.sleep
    verify_poll_s: float = 0.25
    watch: AnomalyWatch | None = None
    # told of every incident transition (the notifier pages on escalated, held, ...); it must
    # not raise, and a failure to tell must never stop healing
    notify: Callable[[Incident, str], None] | None = None
    # one actor at a time on the fleet: sweeps, retries and runs by hand in other processes
    # share the store, so each takes this lock (wiring: a file lock in the state dir)
    exclusive: Callable[[], AbstractContextManager[None]] = nullcontext
    # root-cause analysis of each NEW incident (rca.stage.RcaStage.for_incident): queued after
    # the sweep's fixes, so it never delays one, and cut off at explain_deadline_s from then;
    # what it returns is kept in the incident's detail, and what it passed to its last argument
    # (the rules' report, before the model is asked) is kept when it runs out of time
    explain: Callable[[Incident, HostVerdict, Diagnosis, Callable[[Mapping[str, Any]], None]],
                      Mapping[str, Any]] | None = None
    explain_deadline_s: float = 40.0
    # who runs those analyses: the service's long-lived explainer (service.SweepLoop sets it),
    # which no sweep waits for; None: each sweep makes one and waits for it (cron, by hand)
    explainer: Explainer | None = None
    _running: int = field(default=0, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)

    # -- observe + diagnose --------------------------------------------------------------------
    def look(self, detected: frozenset[tuple[str, str, str]] | None = None
             ) -> tuple[list[HostVerdict], tuple[str, ...], str | None]:
        """Observe the fleet and diagnose every host. ``detected``: the learned detectors'
        opinions to judge with (``selfheal diagnose`` steps them first); by default the last
        step's, a sweep's own being taken after its fixes."""
        now = self.clock()
        hosts = list(self.inventory.hosts)
        faults = self.rules.faults
        try:
            obs = self.source.observe([faults.signals[s] for s in faults.used_signals],
                                      self.inventory.by_prometheus_host(), now)
        except SourceUnavailable as exc:
            log.error("source unavailable", extra={"error": str(exc)})
            unknown = [HostVerdict(h, Health.UNKNOWN, (), (f"no data: {exc}",)) for h in hosts]
            return unknown, (), str(exc)
        groups = {name: host.groups for name, host in self.inventory.hosts.items()}
        verdicts = diagnose(obs.findings, faults, hosts, groups,
                            self._detected() if detected is None else detected)
        return verdicts, obs.refused, None

    def _detected(self) -> frozenset[tuple[str, str, str]]:
        """The learned detectors' opinions from their last step (the previous sweep's, so
        rules never wait on the detectors' queries): (host, signal, detector)."""
        return self.watch.opinions if self.watch is not None else frozenset()

    # -- one sweep -----------------------------------------------------------------------------
    def sweep(self, dry_run: bool = False, hosts: Collection[str] | None = None
              ) -> SweepReport:
        """One pass over the fleet, or over ``hosts`` only (an alert's host: ``serve``).

        The whole fleet is observed either way (one query per signal), so the guardrails count
        every broken and unknown host; a sweep over ``hosts`` settles, opens and acts on those
        hosts' incidents only, and leaves the learned detectors to the fleet sweeps. A dry run
        changes nothing and takes no lock.

        The root-cause analyses of the incidents it opened go to ``explainer`` (a service's):
        the sweep returns without them. Without one, the sweep waits for them after releasing
        the lock (their writes take it), so a one-shot sweep returns with them recorded.
        """
        explainer = self.explainer or Explainer()
        try:
            with nullcontext() if dry_run else self.exclusive():
                return self._sweep(dry_run, None if hosts is None else frozenset(hosts),
                                   explainer)
        finally:
            if explainer is not self.explainer:
                explainer.close()

    def _sweep(self, dry_run: bool, hosts: frozenset[str] | None, explainer: Explainer
               ) -> SweepReport:
        started = self.clock()
        fleet, refused, error = self.look()
        verdicts = fleet if hosts is None else [v for v in fleet if v.host in hosts]
        actions: list[Action] = []
        runnable: list[Admitted] = []
        fresh: list[tuple[int, HostVerdict, Diagnosis]] = []  # incidents opened this sweep
        if error is None:
            if not dry_run:
                if any(v.diagnoses for v in verdicts):
                    self.executor.prepare()  # overlaps Ansible's import with the admissions
                self._settle(fleet, hosts)
            view = self._view(fleet, started, dry_run)
            for verdict in verdicts:
                for diagnosis in verdict.diagnoses:
                    try:
                        admitted = self._admit(diagnosis, view, runnable)
                    except IllegalTransition as exc:  # another writer moved it: next sweep
                        log.warning("incident moved by another writer; looking again next "
                                    "sweep", extra={"host": diagnosis.host, "error": str(exc)})
                        continue
                    if isinstance(admitted, Admitted):
                        runnable.append(admitted)
                    else:
                        actions.append(admitted)
                    opened = (admitted.incident.id if isinstance(admitted, Admitted)
                              and admitted.incident else getattr(admitted, "incident_id", None))
                    if opened is not None and (diagnosis.host, diagnosis.fault,
                                               diagnosis.subject) not in view.active:
                        fresh.append((opened, verdict, diagnosis))
        if runnable:
            workers = max(1, self.rules.policy.max_concurrent)
            with ThreadPoolExecutor(max_workers=workers) as pool:
                fn = self._dry_run if dry_run else self._remediate
                actions.extend(pool.map(lambda a: fn(a.incident, a.plan), runnable))
        if fresh and self.explain is not None:
            self._queue_explanations(fresh, explainer)
        # a dry run changes nothing, the detectors' saved state included; the detectors step
        # with the fleet sweeps only (their windows assume that cadence)
        anomalies = (self.detect(started, persist=not dry_run)
                     if error is None and hosts is None else None)
        return SweepReport(started, self.clock(), tuple(verdicts), tuple(actions), refused,
                           error, dry_run, anomalies,
                           None if hosts is None else tuple(sorted(hosts)))

    def _queue_explanations(self, fresh: list[tuple[int, HostVerdict, Diagnosis]],
                            explainer: Explainer) -> None:
        """Hand the incidents this sweep opened to ``explainer``, after the sweep's fixes; each
        result is written under the act lock (``_record_explanation``), so never during a sweep.
        A disagreement between the rules and the model, or a raised tier, is told and makes the
        next plan of a still open incident need approval (``_admit``)."""
        assert self.explain is not None
        explain = self.explain
        for incident_id, verdict, diagnosis in fresh:
            incident = self.store.get(incident_id)
            if incident is None or incident.fault != diagnosis.fault or "rca" in incident.detail:
                continue
            job = Analysis(incident_id,
                           partial(explain, incident, verdict, diagnosis),
                           partial(self._record_explanation, incident_id),
                           time.monotonic() + self.explain_deadline_s, self.explain_deadline_s)
            if not explainer.submit(job):  # this sweep holds the lock: write it now
                self._keep_explanation(incident_id, not_queued(explainer.waiting))

    def _record_explanation(self, incident_id: int, found: Mapping[str, Any]) -> None:
        try:
            with self.exclusive():
                self._keep_explanation(incident_id, found)
        except TemporaryError as exc:  # the lock stayed busy: the analysis is lost, say so
            log.error("root-cause analysis not recorded", extra={"incident": incident_id,
                                                                 "error": str(exc)})

    def _keep_explanation(self, incident_id: int, found: Mapping[str, Any]) -> None:
        current = self.store.get(incident_id)
        if current is None:
            return
        report = found.get("rca") or {}
        llm = report.get("llm") or {}
        ask = bool(report.get("needs_approval"))
        note = (f"root-cause analysis: {report.get('summary', 'not available')}; model "
                f"{llm.get('status', 'off')}: {llm.get('reason', '')}")[:500]
        self._move(current, current.state, note, tell=ask, detail={**current.detail, **found})
        self.store.audit("incident.explained", f"{current.host}/{current.fault}",
                         {"incident": incident_id, "llm": llm.get("status", "off"),
                          "needs_approval": ask})

    def _view(self, verdicts: list[HostVerdict], now: float, dry_run: bool) -> _SweepView:
        """What every admission shares, read from the store once per sweep."""
        return _SweepView(
            broken=sum(1 for v in verdicts if v.health is Health.FIRING),
            unknown=sum(1 for v in verdicts if v.health is Health.UNKNOWN),
            fleet=len(verdicts), dry_run=dry_run,
            active={} if dry_run else {(i.host, i.fault, i.subject): i
                                       for i in self.store.active()},
            history=self.store.history(now - self.history_window()),
            records=self.store.remediation_records())

    def retry(self, incident_id: int, by: str) -> Action:
        """A human hands an escalated, rolled-back or held incident back to the loop: it is
        re-planned from the fleet as it is now and goes through every guardrail again.

        An ended incident is closed for retry and a new one is opened (``retry_of`` links them);
        a held one is simply looked at again now. A fault that is gone is said, not run.
        """
        with self.exclusive():
            return self._retry(incident_id, by)

    def _retry(self, incident_id: int, by: str) -> Action:
        incident = self.store.get(incident_id)
        if incident is None:
            raise TargetError(f"no incident {incident_id}; see `selfheal incidents list`")
        retryable = (S.ESCALATED, S.ROLLED_BACK, S.HELD)
        if incident.state not in retryable or incident.cleared_at is not None:
            raise TargetError(f"incident {incident_id} is {incident.state.value}"
                              f"{' and cleared' if incident.cleared_at else ''}; retry takes "
                              "escalated, rolled-back or held incidents whose fault lasts")
        verdicts, _, error = self.look()
        if error is not None:
            raise SourceUnavailable(f"cannot re-plan without data: {error}")
        verdict = next((v for v in verdicts if v.host == incident.host), None)
        diagnosis = next((d for d in (verdict.diagnoses if verdict else ())
                          if d.fault == incident.fault and d.subject == incident.subject), None)
        fault = self.rules.faults.faults.get(incident.fault)
        if diagnosis is None:
            # judged on the fault's own signals: another fault firing on the host says nothing
            unknown = verdict is None or fault is None or not verdict.cleared(
                fault, incident.subject, self.rules.faults)
            why = (f"{incident.fault} on {incident.host} cannot be judged now (its signals are "
                   "unknown, or the host itself is down): nothing is retried" if unknown
                   else f"{incident.fault} is not firing on {incident.host} now; nothing to "
                   "retry (the next sweep settles the incident)")
            return Action(incident.host, incident.fault, "unknown" if unknown else "none",
                          "unknown" if unknown else "not_firing", incident.remediation,
                          incident.id, (why,), incident.detected_at, subject=incident.subject)
        now = self.clock()
        origin = {}
        if incident.state.is_terminal:
            self.store.hand_back(incident, by, now)
            origin = {"retry_of": incident.id, "retried_by": by}
        else:
            self.store.audit("incident.retried", f"{incident.host}/{incident.fault}",
                             {"incident": incident.id, "by": by}, now)
        admitted = self._admit(diagnosis, self._view(verdicts, now, False), [], origin)
        if isinstance(admitted, Admitted):
            return self._remediate(admitted.incident, admitted.plan)
        return admitted

    def detect(self, now: float, persist: bool = True) -> AnomalyReport | None:
        """Learned and fixed detectors over the fleet; their findings are reported for people
        (a slow leak days ahead) and logged; faults.yml decides what is fixed."""
        if self.watch is None:
            return None
        try:
            report = self.watch.observe(now, persist=persist)
        except SourceUnavailable as exc:
            log.error("detection skipped: source unavailable", extra={"error": str(exc)})
            return None
        except Exception:  # advisory stage: a detector bug must not stop the healing loop
            log.exception("detection failed; the sweep goes on without it")
            return None
        for finding in report.findings:
            log.warning("anomaly", extra={"host": finding.host, "signal": finding.signal,
                                          "confidence": round(finding.confidence, 2),
                                          "evidence": list(finding.evidence)[:3]})
        return report

    def _settle(self, verdicts: list[HostVerdict], hosts: frozenset[str] | None) -> None:
        """Close what cleared, re-verify what a dead controller left mid-way (on ``hosts``
        only, when the sweep covers only them).

        "Cleared" means the fault's own signals are known and healthy on its host; unknown
        data settles nothing and waits for the next sweep.
        """
        by_host = {v.host: v for v in verdicts}
        now = self.clock()
        for incident in self.store.active():
            if hosts is not None and incident.host not in hosts:
                continue
            verdict = by_host.get(incident.host)
            fault = self.rules.faults.faults.get(incident.fault)
            if verdict is None or fault is None:
                self._gone(incident, "its host left the inventory" if verdict is None
                           else "its fault left the rules", now)
                continue
            cleared = verdict.cleared(fault, incident.subject, self.rules.faults)
            firing = any(d.fault == incident.fault and d.subject == incident.subject
                         for d in verdict.diagnoses)
            if incident.state.is_terminal:
                if cleared:  # escalated, rolled back or suppressed: the fault is gone now
                    self.store.mark_cleared(incident, now)
            elif incident.state in (S.REMEDIATING, S.VERIFYING) and (cleared or firing):
                after = incident
                if incident.state is S.REMEDIATING:
                    after = self._move(incident, S.VERIFYING, "controller restarted mid-run")
                note = ("found healthy after a controller restart" if cleared else
                        "controller stopped mid-remediation and the fault remains: not acting "
                        "twice")
                self._move(after, S.RESOLVED if cleared else S.ESCALATED, note,
                           resolved_at=now if cleared else None)
            elif cleared and incident.state in (S.AWAITING_APPROVAL, S.PLANNED, S.HELD,
                                                S.DETECTED, S.DIAGNOSED):
                target = S.RESOLVED if incident.state in (
                    S.PLANNED, S.AWAITING_APPROVAL, S.HELD) else S.SUPPRESSED
                self._move(incident, target, "fault cleared before any action", resolved_at=now)

    def _gone(self, incident: Incident, why: str, now: float) -> None:
        """An incident whose host or fault no longer exists ends instead of waiting for ever.

        One left mid-run was left by a dead controller (runs hold the lock, and this sweep has
        it): escalated, since nobody verified its fix."""
        if incident.state in (S.REMEDIATING, S.VERIFYING):
            if incident.state is S.REMEDIATING:
                incident = self._move(incident, S.VERIFYING, "controller restarted mid-run")
            incident = self._move(incident, S.ESCALATED, f"{why} while its fix was unverified "
                                  "(the controller stopped mid-run)")
        elif not incident.state.is_terminal:
            incident = self._move(incident, S.SUPPRESSED, f"{why}: nothing to act on")
        self.store.mark_cleared(incident, now)

    def _admit(self, d: Diagnosis, view: _SweepView, queued: list[Admitted],
               origin: Mapping[str, Any] | None = None) -> Action | Admitted:
        """Open, find or resume the incident, plan, and ask the guardrails.

        Held and approval-awaiting incidents are re-planned every sweep: a held one runs once
        its limit clears; an approval counts only for the exact plan that was approved.
        """
        now = self.clock()
        dry_run = view.dry_run
        existing = view.active.get((d.host, d.fault, d.subject))
        kin = self._kin(d, view) if existing is None else None
        if kin is not None and kin.state not in (S.SUPPRESSED, S.HELD):
            return self._open_action(kin)  # the same symptom is already in hand as another fault
        if existing is not None:
            if existing.state is S.SUPPRESSED:
                # suppressed by a maintenance window: look again once it may have ended
                if self._in_maintenance(d.host, now):
                    return self._open_action(existing)
                self.store.mark_cleared(existing, now)
                existing = None
            elif existing.state not in (S.DETECTED, S.DIAGNOSED, S.PLANNED, S.HELD,
                                        S.AWAITING_APPROVAL):
                return self._open_action(existing)  # in hand, or a human's now
        entry = first_remediation(d, self.rules.catalog, view.records)
        incident = existing
        if incident is None and not dry_run:
            # an alert that told of the fault dates its start, for the time to detect
            began = self.store.fault_started_at(d.host, d.fault, d.subject, now)
            incident = self.store.open_incident(d.host, d.fault, now, {
                "evidence": list(d.evidence), "confidence": d.confidence,
                **({"subject": d.subject} if d.subject else {}),
                **({"fault_started_at": began} if began is not None else {}), **(origin or {})})
        if incident is not None and incident.state is S.DETECTED:
            incident = self._move(incident, S.DIAGNOSED, f"diagnosed by {d.diagnosed_by}")
        if entry is None:
            return self._stop(incident, d, S.ESCALATED, "refuse",
                              ("no catalog remediation for this fault",))
        try:
            plan = build_plan(d, entry, self.inventory.resolve([d.host]))
        except PermanentError as exc:
            log.warning("plan refused", extra={"host": d.host, "reason": str(exc)})
            return self._stop(incident, d, S.ESCALATED, "refuse", (str(exc),), entry.name)
        digest = plan_digest(plan, entry)
        approved = incident is not None and self._approval_valid(incident, digest, now)
        if incident is not None and incident.detail.get("plan_digest") != digest:
            # a new plan (first one, or changed labels/catalog): any approval was for another
            detail = {k: v for k, v in incident.detail.items()
                      if k not in ("approved_by", "approved_at", "approved_digest")}
            changes: dict[str, Any] = {"remediation": entry.name,
                       "detail": {**detail, "params": dict(plan.params), "plan_digest": digest}}
            if incident.state is S.DIAGNOSED:
                incident = self._move(incident, S.PLANNED, f"plan: {entry.name}", **changes)
            else:
                reask = "approved_by" in incident.detail
                if reask:
                    log.warning("plan changed since its approval; asking again", extra={
                        "incident": incident.id, "host": d.host})
                incident = self._move(incident, incident.state,
                                      f"plan changed since its approval, approve again: "
                                      f"{entry.name} {dict(plan.params)}" if reask else
                                      f"plan changed: {entry.name} {dict(plan.params)}",
                                      tell=reask, **changes)
        plan = _raised_by_analysis(plan, incident)
        pending = [PastRun(a.plan.targets[0], a.plan.remediation, now, False, a.plan.subject)
                   for a in queued]
        state = PolicyState(now=now, fleet_size=view.fleet, broken_hosts=view.broken,
                            unknown_hosts=view.unknown,
                            running=self._running + len(queued), history=view.history,
                            pending=pending)
        decision = decide(plan, self.rules.policy, state, dry_run, approved=approved)
        verdict = decision.verdict
        if verdict in (Verdict.RUN, Verdict.DRY_RUN):
            return Admitted(incident, plan)
        if verdict is Verdict.SUPPRESS and approved:
            return self._open_action(incident)  # keep the approval for after the window
        end = {Verdict.ASK: S.AWAITING_APPROVAL, Verdict.SUPPRESS: S.SUPPRESSED,
               Verdict.HOLD: S.HELD, Verdict.DEFER: None}.get(verdict, S.ESCALATED)
        waiting_for_approval = (incident is not None and not approved and end is S.HELD
                                and incident.state is S.AWAITING_APPROVAL)
        if end is None or waiting_for_approval or (incident is not None
                                                   and incident.state is end):
            # waiting as before (deferred, still held, still awaiting): no new transition, so
            # no new page; the action carries this sweep's reasons
            state_now = incident.state.value if incident else S.PLANNED.value
            return Action(d.host, d.fault, verdict.value, state_now, entry.name,
                          incident.id if incident else None, decision.reasons,
                          incident.detected_at if incident else None, subject=d.subject)
        return self._stop(incident, d, end, verdict.value, decision.reasons, entry.name)

    def _kin(self, d: Diagnosis, view: _SweepView) -> Incident | None:
        """An active incident on the same host and subject for a fault that supersedes this
        one or that this one supersedes (a crash seen both by its scrape and by systemd)."""
        faults = self.rules.faults.faults
        mine = faults.get(d.fault)
        for (host, fault, subject), incident in view.active.items():
            other = faults.get(fault)
            if host != d.host or subject != d.subject or other is None or mine is None:
                continue
            if fault in mine.supersedes or d.fault in other.supersedes:
                return incident
        return None

    def _open_action(self, incident: Incident | None) -> Action:
        assert incident is not None
        return Action(incident.host, incident.fault, "open", incident.state.value,
                      incident.remediation, incident.id,
                      (f"incident {incident.id} is {incident.state.value}",),
                      incident.detected_at, subject=incident.subject)

    def _approval_valid(self, incident: Incident, digest: str, now: float) -> bool:
        """Approved by someone who is an approver now, recently, for exactly this plan."""
        detail = incident.detail
        approved_at = detail.get("approved_at")
        return (detail.get("approved_by") in self.rules.policy.approvers
                and approved_at is not None
                and now - float(approved_at) < self.rules.policy.approval_ttl_s
                and detail.get("approved_digest") == digest)

    def _in_maintenance(self, host: str, now: float) -> bool:
        return any(w.covers(host, now) for w in self.rules.policy.maintenance_windows)

    def policy_state(self, now: float, broken_hosts: int, fleet_size: int | None = None,
                     unknown_hosts: int = 0) -> PolicyState:
        """The guardrails' view for a plan judged outside a sweep (by hand, diagnose, demo):
        nothing running in this process, the run history from the store."""
        return PolicyState(now=now, broken_hosts=broken_hosts, running=0,
                           unknown_hosts=unknown_hosts,
                           fleet_size=len(self.inventory.hosts) if fleet_size is None
                           else fleet_size,
                           history=self.store.history(now - self.history_window()))

    def history_window(self) -> float:
        longest = max((e.cooldown_s for e in self.rules.catalog.remediations.values()),
                      default=0.0)
        return self.rules.policy.history_window_s(longest)

    def _stop(self, incident: Incident | None, d: Diagnosis, state: S, verdict: str,
              reasons: tuple[str, ...], remediation: str | None = None) -> Action:
        if incident is not None:
            incident = self._move(incident, state, "; ".join(reasons))
            log.warning({S.SUPPRESSED: "suppressed", S.HELD: "held: waiting for a limit"}.get(
                state, "incident needs a human"),
                        extra={"incident": incident.id, "host": d.host, "fault": d.fault,
                               "state": state.value, "reasons": list(reasons)})
        return Action(d.host, d.fault, verdict, state.value, remediation,
                      incident.id if incident else None, reasons,
                      incident.detected_at if incident else None, subject=d.subject)

    def _move(self, incident: Incident, to: S, note: str, tell: bool = False,
              **changes: Any) -> Incident:
        """Write a transition (or, to the same state, new details) before the next step; tell
        the notifier of a new state, or of a same-state change when ``tell``."""
        after = (advance(incident, to, self.clock(), **changes) if to is not incident.state
                 else replace(incident, updated_at=self.clock(), **changes))
        saved = self.store.save_transition(incident, after, note)
        if (tell or to is not incident.state) and self.notify is not None:
            try:
                self.notify(saved, note)
            except Exception:  # telling people must never stop healing
                log.exception("notifier failed", extra={"incident": saved.id})
        return saved

    # -- execute + verify ----------------------------------------------------------------------
    def _dry_run(self, incident: Incident | None, plan: Plan) -> Action:
        host = plan.targets[0]
        try:
            outcome = self.executor.run(plan, "remediate", check=True)
        except Exception as exc:  # report it with the others
            log.exception("check mode run failed", extra={"host": host})
            return Action(host, plan.fault, "failed", "check_failed", plan.remediation, None,
                          (f"{type(exc).__name__}: {str(exc)[:300]}",), subject=plan.subject)
        return Action(host, plan.fault, Verdict.DRY_RUN.value,
                      "would_remediate" if outcome.status is OutcomeStatus.SUCCEEDED
                      else "check_failed", plan.remediation, None,
                      (f"check mode: {outcome.status.value}", *outcome.messages),
                      subject=plan.subject)

    def _remediate(self, incident: Incident | None, plan: Plan) -> Action:
        """Heal one incident; any error escalates it instead of ending the sweep."""
        assert incident is not None
        with self._lock:
            self._running += 1
        try:
            return self._heal(incident, plan)
        except Exception as exc:  # one failed fix must not lose the others or the record
            log.exception("remediation failed", extra={"incident": incident.id})
            return self._fail(incident, plan, f"{type(exc).__name__}: {str(exc)[:300]}")
        finally:
            with self._lock:
                self._running -= 1

    def _fail(self, incident: Incident, plan: Plan, error: str) -> Action:
        current = self.store.get(incident.id) or incident
        note = f"selfheal error, escalated: {error}"
        if not current.state.is_terminal:
            self._move(current, S.ESCALATED, note)
        return Action(incident.host, incident.fault, "failed", S.ESCALATED.value,
                      plan.remediation, incident.id, (note,), incident.detected_at,
                      subject=incident.subject)

    def _heal(self, incident: Incident, plan: Plan) -> Action:
        host = plan.targets[0]
        start = self.clock()
        incident = self._move(incident, S.REMEDIATING, f"running {plan.remediation}",
                              remediation_started_at=start)
        if plan.check_first:
            check = self.run_play(plan, "remediate", True, incident.id)
            if check.status is not OutcomeStatus.SUCCEEDED:
                return self._finish(incident, plan, S.ESCALATED, check,
                                    f"check mode {check.status.value}; not applying")
        outcome = self.run_play(plan, "remediate", incident_id=incident.id)
        incident = self._move(incident, S.VERIFYING, f"play {outcome.status.value}",
                              remediation_finished_at=outcome.finished_at)
        if outcome.status is OutcomeStatus.UNREACHABLE:
            return self._finish(incident, plan, S.ESCALATED, outcome,
                                "host unreachable over SSH; escalated once, not retried")
        if outcome.status is OutcomeStatus.WIDENED:  # no verify or rollback on a guess
            return self._finish(incident, plan, S.ESCALATED, outcome,
                                f"the run touched hosts the plan did not name "
                                f"{list(outcome.extra_hosts)}; escalated, look at them")
        # a failed play is looked at once (it may have fixed the fault before failing), not
        # waited on for the whole verify window: its rollback should start now
        healthy = self._verify(plan, host, outcome,
                               once=outcome.status is not OutcomeStatus.SUCCEEDED)
        if outcome.status is OutcomeStatus.SUCCEEDED and healthy:
            return self._finish(incident, plan, S.RESOLVED, outcome,
                                f"{plan.verify_signal} healthy on a fresh sample")
        self.store.mark_failed_verification(incident.id)
        why = (f"play {outcome.status.value}" if outcome.status is not OutcomeStatus.SUCCEEDED
               else f"{plan.verify_signal} not healthy within the verify timeout")
        entry = self.rules.catalog.get(plan.remediation)
        if entry is not None and entry.rollback == "role":
            rollback = self.run_play(plan, "rollback", incident_id=incident.id)
            return self._finish(incident, plan, S.ROLLED_BACK, outcome,
                                f"{why}; rollback {rollback.status.value}; escalated")
        return self._finish(incident, plan, S.ESCALATED, outcome, f"{why}; escalated")

    def run_play(self, plan: Plan, phase: Phase, check: bool = False,
                 incident_id: int | None = None) -> Outcome:
        """One play, with "run started" written before it and its outcome after it (a play that
        raises is recorded as failed, then the error goes on to the caller)."""
        host = plan.targets[0]
        started = self.clock()
        run_id = self.store.start_run(incident_id, host, plan.remediation, phase, check, started)
        try:
            outcome = self.executor.run(plan, phase, check=check)
        except Exception as exc:
            outcome = Outcome(OutcomeStatus.FAILED, started, self.clock(), check,
                              messages=(f"{type(exc).__name__}: {str(exc)[:300]}",))
            self.store.finish_run(run_id, host, plan.remediation, phase, outcome, incident_id)
            raise
        self.store.finish_run(run_id, host, plan.remediation, phase, outcome, incident_id)
        return outcome

    def _verify(self, plan: Plan, host: str, outcome: Outcome, once: bool = False) -> bool:
        """Wait for the verify signal to be healthy on a sample taken after the play ended
        (``once``: look at one fresh sample, do not wait out the verify window)."""
        entry = self.rules.catalog.get(plan.remediation)
        timeout = entry.verify.timeout_s if entry else 30.0
        signal = self.rules.faults.signals[plan.verify_signal]
        address = self.inventory.hosts[host].prometheus_host
        deadline = self.clock() + (min(timeout, 2.0) if once else timeout)
        while self.clock() < deadline:
            try:
                obs = self.source.observe([signal], {address: host}, self.clock())
            except SourceUnavailable:
                obs = None
            if obs is not None and _recovered(obs.findings, signal, plan, host,
                                              outcome.finished_at):
                return True
            self.sleep(self.verify_poll_s)
        return False

    def _finish(self, incident: Incident, plan: Plan, state: S, outcome: Outcome,
                note: str) -> Action:
        now = self.clock()
        detail = {**incident.detail, "outcome": outcome.status.value,
                  "messages": list(outcome.messages)[:10], "artifacts": outcome.artifact_dir}
        if incident.state is S.REMEDIATING and state is not S.ESCALATED:
            incident = self._move(incident, S.VERIFYING, "check failed")
        incident = self._move(incident, state, note, detail=detail,
                              resolved_at=now if state is S.RESOLVED else None)
        return Action(incident.host, incident.fault, Verdict.RUN.value, state.value,
                      plan.remediation, incident.id, (note, *outcome.messages[:3]),
                      incident.detected_at, incident.remediation_started_at,
                      incident.remediation_finished_at, incident.resolved_at,
                      subject=incident.subject)


def _raised_by_analysis(plan: Plan, incident: Incident | None) -> Plan:
    """The plan with its risk tier raised by the incident's root-cause analysis: the model's
    higher tier, or tier 3 (approval) when the model and the rules disagree. Never lowered."""
    report = incident.detail.get("rca") if incident is not None else None
    if not isinstance(report, Mapping):
        return plan
    tier = max(plan.risk_tier, int(report.get("risk_tier") or 0),
               3 if report.get("needs_approval") else 0)
    return replace(plan, risk_tier=tier) if tier > plan.risk_tier else plan


def _recovered(findings: Iterable[Finding], signal: Signal, plan: Plan, host: str,
               after: float) -> bool:
    """The plan's series of ``signal`` on ``host`` is healthy on samples newer than ``after``.

    For a signal with a subject, the plan's subject is judged; a subject whose series is gone
    while the host's other series of the signal are fresh (the rogue process ended) counts as
    recovered.
    """
    found = [f for f in findings if f.host == host and not f.absent]
    if signal.subject and plan.subject:
        mine = [f for f in found if signal.subject_of(f.labels) == plan.subject]
        if not mine:
            return any(f.observed_at > after for f in found)
    else:
        mine = [f for f in found if _same_series(f.labels, plan.labels)]
    fresh = [f for f in mine if f.observed_at > after]
    return bool(mine) and len(fresh) == len(mine) and all(
        f.health is Health.HEALTHY for f in fresh)


def _same_series(labels: Mapping[str, str], target: Mapping[str, str]) -> bool:
    """The series names the same scrape target (and unit) as the one the plan fixes."""
    return all(labels.get(k) == target[k] for k in ("instance", "job", "unit") if k in target)
