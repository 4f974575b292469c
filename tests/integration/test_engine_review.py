"""Held incidents, approvals and retry as a human meets them (found by a hostile review).

Real Prometheus, real SQLite store, a real HTTP receiver for notifications; only ansible-runner's
``run`` is replaced at the edge by ``Fixer`` (see test_engine_guardrails).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from orchestrator.config import NotifySettings
from orchestrator.engine import Controller
from orchestrator.models import Incident, IncidentState as S
from orchestrator.notify import Notifier
from tests.integration.conftest import Exporter, RealPrometheus
from tests.integration.test_engine_guardrails import FakeResult, build, crash
from tests.integration.test_engine_hold import with_entry
from tests.receivers import webhook

pytestmark = pytest.mark.integration
NET = "127.0.7"  # this module's hosts


def titles(received: list[dict[str, object]]) -> list[str]:
    return [str(m["title"]) for m in received]


def test_retry_with_nothing_to_do_does_not_need_a_human(tmp_path: Path,
                                                        prometheus: RealPrometheus,
                                                        exporter: Exporter) -> None:
    """`incidents retry` of a fault that is gone says so and needs nobody (exit 0)."""
    controller, fixer = build(tmp_path, prometheus, exporter,
                              {"blast_radius": {"max_broken_fraction": 1}}, net=NET)
    fixer.explode_on = {"h1"}
    crash(exporter, prometheus, 1, net=NET)
    (failed,) = controller.sweep().actions
    assert failed.state == S.ESCALATED
    crash(exporter, prometheus, net=NET)  # fixed by hand meanwhile
    action = controller.retry(failed.incident_id or 0, "bob")
    assert "nothing to retry" in action.reasons[0]
    assert not action.needs_human  # the CLI maps needs_human to exit 1


def test_a_plan_change_after_approval_tells_the_approvers(tmp_path: Path,
                                                          prometheus: RealPrometheus,
                                                          exporter: Exporter) -> None:
    """The approver approved; the plan then changes (a catalog edit, a new label value): the
    approval is dropped and the approvers are asked again (a second message), not left believing
    it will run."""
    controller, fixer = build(tmp_path, prometheus, exporter, {"approvers": ["alice"]}, tier=3,
                              net=NET)
    with webhook() as hook:
        controller.notify = Notifier.from_settings(NotifySettings(
            urls=[f"json://127.0.0.1:{hook.port}/"])).incident_changed  # type: ignore[list-item]
        crash(exporter, prometheus, 2, net=NET)
        (asked,) = controller.sweep().actions
        incident = controller.store.get(asked.incident_id or 0)
        assert incident is not None and titles(hook.received) == [
            "selfheal: service_crash on h2 is awaiting_approval"]
        controller.store.approve(incident, "alice", time.time())
        controller.rules = with_entry(controller.rules, description="restart, edited")
        assert [a.verdict for a in controller.sweep().actions] == ["ask"]
        assert fixer.calls == []
        assert len(hook.received) == 2, titles(hook.received)


def test_a_held_incident_ends_when_its_host_leaves_the_inventory(
        tmp_path: Path, prometheus: RealPrometheus, exporter: Exporter) -> None:
    """h1 is held (mode disabled) and is then decommissioned: the next sweep ends the incident
    instead of keeping ``selfheal_incidents{state="held"}`` (and its alert) up for good."""
    controller, _ = build(tmp_path, prometheus, exporter,
                          {"mode": "disabled", "blast_radius": {"max_broken_fraction": 1}},
                          net=NET)
    crash(exporter, prometheus, 1, net=NET)
    (held,) = controller.sweep().actions
    assert held.state == S.HELD
    hosts = {k: v for k, v in controller.inventory.hosts.items() if k != "h1"}
    controller.inventory = replace(controller.inventory, hosts=hosts)
    crash(exporter, prometheus, net=NET)
    for _ in range(2):
        controller.sweep()
    assert controller.store.incident_counts().get("held", 0) == 0, (
        controller.store.incident_counts())


def busy_store_after(controller: Controller, state: S, hold_s: float = 7.0) -> list[float]:
    """Once the incident reaches ``state``, another process (a backup) holds SQLite's write
    lock for ``hold_s``: longer than busy_timeout (5 s), shorter than write_retry_s (60 s)."""
    database = str(controller.store.engine.url.database)
    held: list[float] = []

    def hook(incident: Incident, note: str) -> None:
        if incident.state is state and not held:
            conn = sqlite3.connect(database, isolation_level=None, check_same_thread=False)
            conn.execute("BEGIN IMMEDIATE")
            held.append(time.monotonic())
            threading.Timer(hold_s, lambda: (conn.execute("COMMIT"), conn.close())).start()

    controller.notify = hook
    return held


def test_a_busy_store_after_the_play_does_not_skip_the_rollback(
        tmp_path: Path, prometheus: RealPrometheus, exporter: Exporter) -> None:
    """The play ran but the fix did not verify, and the store is busy for longer than SQLite's
    busy_timeout: the failed-verification write is retried and the rollback still runs."""
    controller, fixer = build(tmp_path, prometheus, exporter,
                              {"blast_radius": {"max_broken_fraction": 1}}, net=NET)
    entry = controller.rules.catalog.remediations["service_restart"]
    controller.rules = with_entry(controller.rules, rollback="role", verify=entry.verify.model_copy(
        update={"timeout_s": 1.0}))
    phases: list[str] = []

    def no_fix(**kwargs: Any) -> FakeResult:  # the play succeeds but the service stays down
        phases.append(Path(kwargs["playbook"]).stem)
        targets = kwargs["limit"].split(",")
        return FakeResult("successful", 0, {"ok": {t: 1 for t in targets}})

    controller.executor.run_fn = no_fix
    held = busy_store_after(controller, S.VERIFYING)
    crash(exporter, prometheus, 2, net=NET)
    (action,) = controller.sweep().actions
    assert held, "the store was never made busy"
    assert phases == ["remediate", "rollback"], (phases, action.reasons)
    assert action.state == S.ROLLED_BACK
    assert fixer.calls == []


def test_a_busy_store_before_the_play_does_not_escalate(
        tmp_path: Path, prometheus: RealPrometheus, exporter: Exporter) -> None:
    """A store busy for 5-60 s when a heal starts delays "run started" (retried), it does not
    escalate the incident without any play."""
    controller, fixer = build(tmp_path, prometheus, exporter,
                              {"blast_radius": {"max_broken_fraction": 1}}, net=NET)
    held = busy_store_after(controller, S.REMEDIATING)
    crash(exporter, prometheus, 3, net=NET)
    (action,) = controller.sweep().actions
    assert held, "the store was never made busy"
    assert action.state == S.RESOLVED, action.reasons
    assert fixer.calls == [["h3"]]
