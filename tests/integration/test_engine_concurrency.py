"""A sweep and a human's ``incidents retry`` at the same time (found by a hostile review).

Two ``Controller`` objects, each with its own ``Store`` on one database file and the real file
lock in one state dir (as ``wiring`` gives every process), stand in for ``sweep --every`` and
the human's command. Real Prometheus, SQLite and flock; only ansible-runner's ``run`` is replaced
at the edge (see test_engine_guardrails).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from orchestrator.engine import Controller
from orchestrator.errors import TargetError
from orchestrator.execute.runner import AnsibleExecutor
from orchestrator.models import IncidentState as S
from orchestrator.rules import Rules
from orchestrator.store.db import Store
from orchestrator.store.lock import controller_lock
from tests.integration.conftest import Exporter, RealPrometheus
from tests.integration.test_engine_guardrails import KEY, FakeResult, Fixer, build, crash

pytestmark = pytest.mark.integration
NET = "127.0.9"  # this module's hosts
HOSTS = {f"h{i}": i for i in (1, 2, 3)}


def service_for(tmp_path: Path, prometheus: RealPrometheus, exporter: Exporter,
                policy: dict[str, Any]) -> Controller:
    service, _ = build(tmp_path, prometheus, exporter, policy, net=NET)
    service.exclusive = lambda: controller_lock(tmp_path / "state", wait_s=60)
    return service


def second_process(tmp_path: Path, first: Controller, run_fn: Any) -> Controller:
    """Another controller on the same store file and lock: the `incidents retry` process."""
    store = Store(f"sqlite:///{tmp_path / 'state.db'}", KEY)
    executor = AnsibleExecutor(first.executor.settings, first.inventory, tmp_path / "runs-b",
                               run_fn=run_fn)
    return Controller(rules=first.rules, inventory=first.inventory, source=first.source,
                      executor=executor, store=store,
                      exclusive=lambda: controller_lock(tmp_path / "state", wait_s=60))


def strict(controller: Controller) -> None:
    policy = controller.rules.policy.model_copy(update={"mode": "strict"})
    controller.rules = Rules(controller.rules.catalog, controller.rules.faults, policy)


class TimedPlay(Fixer):
    """A play that records when it ran, and can be held open until the test lets it end."""

    def __init__(self, exporter: Exporter, hold: bool = False) -> None:
        super().__init__(exporter, HOSTS, NET)
        self.entered, self.release = threading.Event(), threading.Event()
        self.spans: list[tuple[float, float]] = []
        if not hold:
            self.release.set()

    def __call__(self, **kwargs: Any) -> FakeResult:
        start = time.monotonic()
        self.entered.set()
        self.release.wait(30)
        result = super().__call__(**kwargs)
        self.spans.append((start, time.monotonic()))
        return result


def test_a_sweep_waits_for_a_retry_in_flight_instead_of_escalating_it(
        tmp_path: Path, prometheus: RealPrometheus, exporter: Exporter) -> None:
    """While the retry's play runs, the service sweeps: it waits for the retry to finish
    instead of reading its remediating incident as left behind by a dead controller."""
    service = service_for(tmp_path, prometheus, exporter, {"mode": "disabled"})
    crash(exporter, prometheus, 1, net=NET)
    (held,) = service.sweep().actions
    assert held.state == S.HELD
    strict(service)
    play = TimedPlay(exporter, hold=True)
    human = second_process(tmp_path, service, play)
    retried: list[Any] = []
    retry = threading.Thread(target=lambda: retried.append(human.retry(held.incident_id or 0,
                                                                       "bob")))
    retry.start()
    assert play.entered.wait(20)
    swept: list[Any] = []
    sweep = threading.Thread(target=lambda: swept.append(service.sweep()))
    sweep.start()
    time.sleep(1.0)
    assert sweep.is_alive(), "the sweep did not wait for the retry's run"
    play.release.set()
    retry.join(30)
    sweep.join(30)
    final = service.store.get(held.incident_id or 0)
    assert final is not None and final.state is S.RESOLVED, service.store.transitions(
        held.incident_id or 0)
    assert retried[0].state == S.RESOLVED and swept[0].actions == ()
    assert play.calls == [["h1"]]


def test_a_retry_of_an_incident_the_sweep_took_first_does_not_run_it_twice(
        tmp_path: Path, prometheus: RealPrometheus, exporter: Exporter) -> None:
    """The service and a human's retry both want the same held incident: whoever gets the lock
    first heals it, the other finds it resolved; nothing is escalated, one play runs."""
    service = service_for(tmp_path, prometheus, exporter,
                          {"mode": "disabled", "blast_radius": {"max_broken_fraction": 1}})
    crash(exporter, prometheus, 2, net=NET)
    (held,) = service.sweep().actions
    assert held.state == S.HELD
    strict(service)
    first = TimedPlay(exporter, hold=True)
    service.executor.run_fn = first
    sweep = threading.Thread(target=service.sweep)
    sweep.start()
    assert first.entered.wait(20)  # the sweep is running h2's fix
    second = TimedPlay(exporter)
    human = second_process(tmp_path, service, second)
    outcome: list[Any] = []

    def retry() -> None:
        try:
            outcome.append(human.retry(held.incident_id or 0, "bob"))
        except TargetError as exc:
            outcome.append(exc)

    thread = threading.Thread(target=retry)
    thread.start()
    first.release.set()
    sweep.join(30)
    thread.join(30)
    final = service.store.get(held.incident_id or 0)
    assert final is not None and final.state is S.RESOLVED
    assert isinstance(outcome[0], TargetError) and "resolved" in str(outcome[0])
    assert first.calls == [["h2"]] and second.calls == []


def test_a_retry_waits_for_the_services_fix_max_concurrent_holds_fleet_wide(
        tmp_path: Path, prometheus: RealPrometheus, exporter: Exporter) -> None:
    """max_concurrent 1: while the service runs its one fix, a human's retry of another held
    incident waits for it; the two plays never overlap."""
    service = service_for(tmp_path, prometheus, exporter,
                          {"mode": "disabled", "max_concurrent": 1,
                           "blast_radius": {"max_broken_fraction": 1}})
    crash(exporter, prometheus, 1, 2, net=NET)
    assert {a.state for a in service.sweep().actions} == {S.HELD}
    strict(service)
    busy = TimedPlay(exporter, hold=True)
    service.executor.run_fn = busy
    sweep = threading.Thread(target=service.sweep)
    sweep.start()  # h1 runs (its play is held open), h2 is deferred: max_concurrent is 1
    try:
        assert busy.entered.wait(20)
        h2 = next(i for i in service.store.incidents() if i.host == "h2")
        second = TimedPlay(exporter)
        human = second_process(tmp_path, service, second)
        done: list[Any] = []
        retry = threading.Thread(target=lambda: done.append(human.retry(h2.id, "bob")))
        retry.start()
        time.sleep(1.0)
        assert second.calls == [], "the retry ran while the service's fix was running"
    finally:
        busy.release.set()
        sweep.join(60)
    retry.join(60)
    assert done[0].state == S.RESOLVED and second.calls == [["h2"]]
    assert second.spans[0][0] >= busy.spans[0][1]  # one fix at a time, fleet-wide
