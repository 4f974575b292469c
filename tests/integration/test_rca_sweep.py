"""The sweep explains each new incident after its fix, within a deadline, with real parts.

A real Prometheus, real ansible-runner (local-connection hosts, so the read-only ``diagnose`` role
reads this machine), a real store, and the real litellm client against the local replay server.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from orchestrator.config import (
    PROJECT_ROOT,
    AnsibleSettings,
    LlmSettings,
    PrometheusSettings,
    RcaSettings,
)
from orchestrator.engine import Controller
from orchestrator.execute.inventory import load_inventory
from orchestrator.execute.runner import AnsibleExecutor
from orchestrator.explainer import Explainer
from orchestrator.models import IncidentState as S
from orchestrator.rca.llm import litellm_completion
from orchestrator.rca.stage import RcaStage
from orchestrator.rules import load_rules
from orchestrator.sources.prometheus import PrometheusSource, connect, connect_range
from orchestrator.store.db import Store
from orchestrator.store.lock import controller_lock
from tests.conftest import write_fault_rules
from tests.integration.conftest import Exporter, RealPrometheus
from tests.integration.test_engine import FAULTS, KEY as STORE_KEY, publish
from tests.rca_replay import KEY, KEY_ENV, ReplayServer, Reply, cases, replay_server

pytestmark = pytest.mark.integration
UNIT = "selfheal-demo.service"  # allowed by policy.yml; absent here, so the restart fails


@pytest.fixture
def world(tmp_path: Path, prometheus: RealPrometheus) -> Controller:
    """test_engine's world, with the system Python for modules on the local hosts (a pyenv
    shim on PATH would answer for a version it does not have)."""
    rules_dir = tmp_path / "rules"
    rules_dir.mkdir()
    for name in ("remediations.yml", "policy.yml"):
        (rules_dir / name).write_text((PROJECT_ROOT / "rules" / name).read_text())
    write_fault_rules(rules_dir, FAULTS)
    inv_path = tmp_path / "hosts.ini"
    inv_path.write_text("\n".join(
        f"h{i} ansible_connection=local ansible_python_interpreter=/usr/bin/python3 "
        f"selfheal_prometheus_host=127.0.2.{i}" for i in (1, 2, 3)))
    inventory = load_inventory(inv_path)
    settings = PrometheusSettings(url=prometheus.url)  # type: ignore[call-arg]
    return Controller(rules=load_rules(rules_dir, PROJECT_ROOT / "ansible" / "roles"),
                      inventory=inventory, source=PrometheusSource(connect(settings), settings),
                      executor=AnsibleExecutor(AnsibleSettings(), inventory, tmp_path / "runs"),
                      store=Store(f"sqlite:///{tmp_path / 'state.db'}", STORE_KEY))


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[ReplayServer]:
    monkeypatch.setenv(KEY_ENV, KEY)
    with replay_server() as running:
        yield running


def _stage(world: Controller, prometheus: RealPrometheus, llm: LlmSettings) -> RcaStage:
    return RcaStage(rules=world.rules, inventory=world.inventory,
                    settings=RcaSettings(history_s=600, points=12), llm=llm,
                    query_range=connect_range(PrometheusSettings(url=prometheus.url)),
                    executor=world.executor, store=world.store, secrets=(KEY,))


def test_a_new_incident_keeps_the_analysis_made_after_its_fix(
        world: Controller, exporter: Exporter, prometheus: RealPrometheus,
        server: ReplayServer) -> None:
    answer = (cases()[0].parent / "service_crash_agree" / "answer.txt").read_text()
    server.replies.append(Reply(answer))
    world.explain = _stage(world, prometheus, server.settings()).for_incident
    # litellm's import (11-60 s under load here, once per process) is not what this test
    # times: import it first, so the deadline covers the role and the call
    litellm_completion()
    world.explain_deadline_s = 120
    publish(exporter, prometheus, 2, UNIT, 0)
    try:
        report = world.sweep()
    finally:
        publish(exporter, prometheus, 2, UNIT, 1)
    action = next(a for a in report.actions if a.host == "h2")
    incident = world.store.get(action.incident_id)  # type: ignore[arg-type]
    assert incident is not None and incident.state is S.ESCALATED  # the restart ran and failed
    rca: dict[str, Any] = incident.detail["rca"]
    assert rca["fault"] == "service_crash" and rca["remediation"] == "service_restart"
    assert rca["llm"] == {"status": "used", "reason": "the model agrees with the rules"}
    context = incident.detail["rca_context"]
    assert context["facts"]["status"] == "ok", context["facts"]
    assert context["facts"]["memory"]["total_mb"] > 0 and context["facts"]["top_cpu"]
    assert {s["signal"] for s in context["timeline"]} >= {"service_up"}
    assert json.loads(incident.detail["rca_llm_raw"])["fault"] == "service_crash"
    # the fix ran before the analysis: the play's run precedes the explained record
    records = world.store.audit_records()
    order = [r.action for r in records if r.payload.get("incident") == incident.id]
    assert order.index("ansible.remediate") < order.index("incident.explained")
    # the facts never reached the run's artefacts: their events were stripped in memory
    runs = sorted((world.executor.runs_dir).glob("*-diagnose-diagnose-*"))
    assert runs, "the diagnose role did not run"
    events = "".join(p.read_text() for p in runs[-1].glob("artifacts/*/job_events/*.json"))
    assert "Mem:" not in events and "kept in memory" in events


def test_a_slow_analysis_is_cut_at_the_deadline_and_the_rules_report_kept(
        world: Controller, exporter: Exporter, prometheus: RealPrometheus,
        server: ReplayServer) -> None:
    server.replies.append(Reply("{}", delay_s=40))
    stage = _stage(world, prometheus, server.settings(timeout_s=60))
    world.explain = replace(stage, settings=RcaSettings(host_facts=False)).for_incident
    world.explain_deadline_s = 12.0
    publish(exporter, prometheus, 3, UNIT, 0)
    try:
        report = world.sweep()
    finally:
        publish(exporter, prometheus, 3, UNIT, 1)
    action = next(a for a in report.actions if a.host == "h3")
    incident = world.store.get(action.incident_id)  # type: ignore[arg-type]
    assert incident is not None
    rca = incident.detail["rca"]
    assert "passed its 12 s deadline: the rules' report stands alone" in (
        rca["llm"]["reason"])
    assert rca["fault"] == "service_crash" and rca["remediation"] == "service_restart"
    assert incident.detail["rca_context"]["host"] == "h3"
    # the fix (its play, its verify window, its escalation) ended before the analysis started
    ended = max(r.at for r in world.store.audit_records() if r.action == "incident.escalated")
    took = report.finished_at - ended
    assert took < 16, f"the sweep waited {took:.1f} s after the fix for the model"


def _gated(world: Controller, prometheus: RealPrometheus, gate: threading.Event,
           began: threading.Event) -> Callable[..., Mapping[str, Any]]:
    """The real stage (rules alone, no host facts), started only once ``gate`` opens: an
    analysis as slow as the test needs, with no clock in it."""
    stage = replace(_stage(world, prometheus, LlmSettings()),
                    settings=RcaSettings(host_facts=False, history_s=600, points=12))

    def explain(*args: Any) -> Mapping[str, Any]:
        began.set()
        gate.wait()
        return stage.for_incident(*args)
    return explain


def test_in_a_service_the_sweep_does_not_wait_for_the_analysis_and_it_still_lands(
        world: Controller, exporter: Exporter, prometheus: RealPrometheus,
        tmp_path: Path) -> None:
    gate, began = threading.Event(), threading.Event()
    world.explain = _gated(world, prometheus, gate, began)
    world.exclusive = lambda: controller_lock(tmp_path, wait_s=60)
    world.explainer = Explainer()  # what SweepLoop.run sets
    publish(exporter, prometheus, 2, UNIT, 0)
    try:
        report = world.sweep()
        action = next(a for a in report.actions if a.host == "h2")
        began.wait(60)
        # the sweep is back, its analysis still waits at the gate, and the act lock is free
        assert began.is_set() and not gate.is_set()
        incident = world.store.get(action.incident_id)  # type: ignore[arg-type]
        assert incident is not None and "rca" not in incident.detail
        with controller_lock(tmp_path):  # no wait: it raises ControllerBusy when held
            pass
        gate.set()
        world.explainer.close()  # the service stopping: waits for the queued analyses
    finally:
        gate.set()
        publish(exporter, prometheus, 2, UNIT, 1)
    incident = world.store.get(action.incident_id)  # type: ignore[arg-type]
    assert incident is not None and incident.state is S.ESCALATED
    assert incident.detail["rca"]["fault"] == "service_crash"
    assert incident.detail["rca_context"]["host"] == "h2"
    explained = [r for r in world.store.audit_records() if r.action == "incident.explained"]
    assert [r.payload["incident"] for r in explained] == [incident.id]


def test_a_one_shot_sweep_returns_with_its_analysis_recorded(
        world: Controller, exporter: Exporter, prometheus: RealPrometheus,
        tmp_path: Path) -> None:
    gate, began = threading.Event(), threading.Event()
    world.explain = _gated(world, prometheus, gate, began)
    world.exclusive = lambda: controller_lock(tmp_path, wait_s=60)
    assert world.explainer is None  # cron, `selfheal sweep`: no service's explainer
    opener = threading.Thread(target=lambda: began.wait(60) and gate.set())
    publish(exporter, prometheus, 1, UNIT, 0)
    opener.start()
    try:
        report = world.sweep()
    finally:
        gate.set()
        opener.join()
        publish(exporter, prometheus, 1, UNIT, 1)
    action = next(a for a in report.actions if a.host == "h1")
    incident = world.store.get(action.incident_id)  # type: ignore[arg-type]
    assert incident is not None and incident.detail["rca"]["fault"] == "service_crash"
    assert incident.detail["rca"]["llm"]["reason"] == (
        "no model configured (llm.model): rules alone")
