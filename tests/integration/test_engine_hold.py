"""Held incidents resume, flapping backs off then escalates, approvals bind to the plan, and a
human can retry or run a fix by hand through the guardrails.

Real Prometheus and store; only ansible-runner's ``run`` is replaced at the edge by ``Fixer``
(see test_engine_guardrails), which heals a host by flipping its exporter series back to 1.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from orchestrator.core.catalog import Catalog
from orchestrator.engine import Controller
from orchestrator.errors import TargetError
from orchestrator.manual import ManualRequest, run_by_hand
from orchestrator.models import Incident, IncidentState as S, OutcomeStatus, Verdict
from orchestrator.rules import Rules
from tests.integration.conftest import Exporter, RealPrometheus
from tests.integration.test_engine_guardrails import Fixer, build, crash, states

pytestmark = pytest.mark.integration
NET = "127.0.4"  # this module's hosts


def world(tmp_path: Path, prometheus: RealPrometheus, exporter: Exporter,
          policy: dict[str, Any] | None = None, tier: int | None = None,
          cooldown_s: float | None = None) -> tuple[Controller, Fixer, list[tuple[int, str]]]:
    controller, fixer = build(tmp_path, prometheus, exporter, policy, tier, net=NET)
    if cooldown_s is not None:
        controller.rules = with_entry(controller.rules, cooldown_s=cooldown_s)
    pages: list[tuple[int, str]] = []
    controller.notify = lambda incident, note: pages.append((incident.id, incident.state.value))
    return controller, fixer, pages


def with_entry(rules: Rules, **update: Any) -> Rules:
    entry = rules.catalog.remediations["service_restart"].model_copy(update=update)
    return Rules(Catalog(remediations={"service_restart": entry}), rules.faults, rules.policy)


def heal(exporter: Exporter, prometheus: RealPrometheus, *numbers: int) -> None:
    """A human restarts the service by hand."""
    for i in numbers:
        exporter.gauge.labels(f"{NET}.{i}:8080", "app.service").set(1)
        prometheus.wait_for(f'selfheal_test_service_up{{instance="{NET}.{i}:8080"}} == 1')


def sweep_until(controller: Controller, done: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        controller.sweep()
        if done():
            return
        time.sleep(0.3)
    raise AssertionError(f"not done within {timeout}s: {states(controller)}")


def only(controller: Controller, host: str) -> Incident:
    (incident,) = [i for i in controller.store.incidents() if i.host == host]
    return incident


def test_too_much_broken_holds_pages_once_and_resumes(tmp_path: Path, prometheus: RealPrometheus,
                                                       exporter: Exporter) -> None:
    """The issue's reproduction: all three crash (held), two are restarted by hand, and the
    third is then healed by the loop without anyone touching it."""
    controller, fixer, pages = world(tmp_path, prometheus, exporter)
    crash(exporter, prometheus, 1, 2, 3, net=NET)
    first = controller.sweep()
    assert {a.state for a in first.actions} == {S.HELD}
    assert all("page a human" in a.reasons[0] for a in first.actions)
    assert first.exit_code == 1 and fixer.calls == []
    second = controller.sweep()
    assert {a.verdict for a in second.actions} == {Verdict.HOLD}
    # told once per incident and state, not once per sweep (the notifier pages on "held")
    assert [s for _, s in pages].count("held") == 3 and len(pages) == len(set(pages))
    heal(exporter, prometheus, 1, 2)
    sweep_until(controller, lambda: only(controller, "h3").state is S.RESOLVED)
    assert fixer.calls == [["h3"]]
    assert states(controller) == {"h1": "resolved", "h2": "resolved", "h3": "resolved"}
    notes = [t["note"] for t in controller.store.transitions(only(controller, "h1").id)]
    assert notes[-1] == "fault cleared before any action"
    assert controller.store.verify_audit() > 0


def test_flapping_backs_off_then_escalates(tmp_path: Path, prometheus: RealPrometheus,
                                           exporter: Exporter) -> None:
    controller, fixer, _ = world(
        tmp_path, prometheus, exporter,
        {"blast_radius": {"max_broken_fraction": 1},
         "flapping": {"window_s": 600, "backoff": 2, "max_returns": 3}}, cooldown_s=2)
    held_reasons: list[str] = []
    for run in (1, 2, 3):
        crash(exporter, prometheus, 1, net=NET)
        deadline = time.monotonic() + 30
        while len(fixer.calls) < run and time.monotonic() < deadline:
            report = controller.sweep()
            held_reasons += [r for a in report.actions if a.state == S.HELD for r in a.reasons]
            time.sleep(0.2)
        assert len(fixer.calls) == run
    assert any("cooldown is 4s (backed off" in r for r in held_reasons)  # 2 s doubled
    crash(exporter, prometheus, 1, net=NET)
    (action,) = controller.sweep().actions
    assert action.state == S.ESCALATED and "flapping" in action.reasons[0]
    assert len(fixer.calls) == 3


def test_approval_is_bound_to_the_plan(tmp_path: Path, prometheus: RealPrometheus,
                                       exporter: Exporter) -> None:
    controller, fixer, pages = world(tmp_path, prometheus, exporter,
                                     {"approvers": ["alice"]}, tier=3)
    crash(exporter, prometheus, 2, net=NET)
    (asked,) = controller.sweep().actions
    assert asked.state == S.AWAITING_APPROVAL
    incident = controller.store.get(asked.incident_id or 0)
    assert incident is not None and incident.detail["plan_digest"]
    controller.store.approve(incident, "mallory", time.time())  # not an approver
    assert [a.verdict for a in controller.sweep().actions] == ["ask"]
    incident = controller.store.get(incident.id)
    assert incident is not None
    controller.store.approve(incident, "alice", time.time())
    # the catalog entry changes after the approval: the approval was for another plan
    controller.rules = with_entry(controller.rules, description="restart, edited")
    assert [a.verdict for a in controller.sweep().actions] == ["ask"]
    incident = controller.store.get(incident.id)
    assert incident is not None and "approved_by" not in incident.detail
    assert fixer.calls == []
    controller.store.approve(incident, "alice", time.time())
    (ran,) = controller.sweep().actions
    assert ran.state == S.RESOLVED and fixer.calls == [["h2"]]
    # asked once, and once more when the plan changed after the approval
    assert [s for _, s in pages].count("awaiting_approval") == 2


def test_retry_hands_an_escalated_incident_back(tmp_path: Path, prometheus: RealPrometheus,
                                                exporter: Exporter) -> None:
    controller, fixer, _ = world(tmp_path, prometheus, exporter,
                                 {"blast_radius": {"max_broken_fraction": 1}}, cooldown_s=1)
    fixer.explode_on = {"h1"}
    crash(exporter, prometheus, 1, net=NET)
    (failed,) = controller.sweep().actions
    assert failed.state == S.ESCALATED
    assert [a.verdict for a in controller.sweep().actions] == ["open"]  # waits for a human
    (past,) = controller.store.history(0)
    assert past.failed  # the exploded run was recorded as failed, not left "started"
    fixer.explode_on = set()
    time.sleep(1.1)  # past the cooldown: retry still goes through the guardrails
    action = controller.retry(failed.incident_id or 0, "bob")
    assert action.state == S.RESOLVED and action.incident_id != failed.incident_id
    new = controller.store.get(action.incident_id or 0)
    old = controller.store.get(failed.incident_id or 0)
    assert new is not None and new.detail["retry_of"] == failed.incident_id
    assert old is not None and old.cleared_at is not None
    retried = [r for r in controller.store.audit_records() if r.action == "incident.retried"]
    assert retried and retried[0].payload["by"] == "bob"
    with pytest.raises(TargetError, match="retry takes escalated"):
        controller.retry(action.incident_id or 0, "bob")


def test_retry_of_a_held_incident_still_obeys_the_limits(tmp_path: Path,
                                                         prometheus: RealPrometheus,
                                                         exporter: Exporter) -> None:
    controller, fixer, _ = world(tmp_path, prometheus, exporter)
    crash(exporter, prometheus, 1, 2, 3, net=NET)
    controller.sweep()
    action = controller.retry(only(controller, "h1").id, "bob")
    assert action.state == S.HELD and action.needs_human and fixer.calls == []


def test_manual_run_passes_the_guardrails_unless_forced(tmp_path: Path,
                                                        prometheus: RealPrometheus,
                                                        exporter: Exporter) -> None:
    controller, fixer, _ = world(tmp_path, prometheus, exporter,
                                 {"blast_radius": {"max_broken_fraction": 1}})
    crash(exporter, prometheus, 1, net=NET)
    controller.sweep()  # the loop heals h1: its cooldown starts
    assert fixer.calls == [["h1"]]
    ask = ManualRequest("h1", "service_restart", {"service_restart_unit": "app.service",
                                                  "service_restart_health_url": f"http://{NET}.1:8080/healthz"},
                        check=False, by="carol")
    refused = run_by_hand(controller, ask)
    assert not refused.ran and refused.decision.verdict is Verdict.HOLD
    assert "cooldown" in refused.decision.reasons[0]
    # the port is kept
    assert refused.plan.params["service_restart_health_url"] == f"http://{NET}.1:8080/healthz"
    with pytest.raises(TargetError, match="--reason"):
        run_by_hand(controller, ManualRequest(**{**ask.__dict__, "force": True}))
    forced = run_by_hand(controller, ManualRequest(**{**ask.__dict__, "force": True,
                                                      "reason": "customer escalation"}))
    assert forced.ran and forced.forced and forced.outcome is not None
    assert forced.outcome.status is OutcomeStatus.SUCCEEDED and fixer.calls[-1] == ["h1"]
    sshd = run_by_hand(controller, ManualRequest(
        "h1", "service_restart", {"service_restart_unit": "sshd.service",
                                  "service_restart_health_url": f"http://{NET}.1:8080/healthz"},
        check=False, by="carol", force=True, reason="try"))
    assert not sshd.ran and "protected_units" in sshd.decision.reasons[0]
    audit = [(r.action, r.payload.get("by"), r.payload.get("forced"))
             for r in controller.store.audit_records() if r.action.startswith("manual.")]
    assert audit == [("manual.refused", "carol", False), ("manual.remediate", "carol", True),
                     ("manual.refused", "carol", False)]
    assert len(fixer.calls) == 2


def test_manual_run_takes_labels_from_the_firing_series(tmp_path: Path,
                                                        prometheus: RealPrometheus,
                                                        exporter: Exporter) -> None:
    controller, fixer, _ = world(tmp_path, prometheus, exporter, {"mode": "disabled"})
    crash(exporter, prometheus, 3, net=NET)
    result = run_by_hand(controller, ManualRequest("h3", "service_restart", {}, check=False,
                                                   by="dave"))
    assert not result.ran and "disabled" in result.decision.reasons[0]  # mode holds by hand
    assert dict(result.plan.params) == {"service_restart_unit": "app.service",
                                        "service_restart_health_url": f"http://{NET}.3:8080/healthz"}
    assert fixer.calls == []
