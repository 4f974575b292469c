"""Sweeps against a real Prometheus and a real store; only ansible-runner's ``run`` is replaced
(at the edge) by a function that "fixes" the host by flipping its exporter series back to 1.

Covers what a review found: deferred incidents resume, approvals still pass every guardrail,
an executor error escalates one incident without losing the others, and a fix is verified on
its own series only.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from orchestrator.config import PROJECT_ROOT, AnsibleSettings, PrometheusSettings
from orchestrator.core.policy import Policy
from orchestrator.engine import Controller
from orchestrator.execute.inventory import load_inventory
from orchestrator.execute.runner import AnsibleExecutor
from orchestrator.models import IncidentState as S
from orchestrator.rules import Rules, load_rules
from orchestrator.sources.prometheus import PrometheusSource, connect
from orchestrator.store.db import Store
from tests.conftest import write_fault_rules
from tests.integration.conftest import Exporter, RealPrometheus
from tests.integration.test_engine import FAULTS

KEY = b"k" * 32
pytestmark = pytest.mark.integration
NET = "127.0.3"  # this module's hosts; other modules use other addresses


@dataclass
class FakeResult:
    status: str
    rc: int
    stats: dict[str, dict[str, int]]
    events: list[Any] = field(default_factory=list)


class Fixer:
    """Stands in for ansible_runner.run: heals the named hosts' series, or fails on request."""

    def __init__(self, exporter: Exporter, hosts: dict[str, int], net: str = NET) -> None:
        self.exporter, self.hosts, self.calls, self.net = exporter, hosts, [], net
        self.explode_on: set[str] = set()

    def __call__(self, **kwargs: Any) -> FakeResult:
        targets = kwargs["limit"].split(",")
        self.calls.append(targets)
        if self.explode_on & set(targets):
            raise RuntimeError("ansible-runner blew up")
        for host in targets:
            self.exporter.gauge.labels(f"{self.net}.{self.hosts[host]}:8080",
                                       "app.service").set(1)
        return FakeResult("successful", 0, {"ok": {t: 1 for t in targets},
                                            "changed": {t: 1 for t in targets}})


def crash(exporter: Exporter, prometheus: RealPrometheus, *numbers: int, net: str = NET) -> None:
    for i in (1, 2, 3):
        exporter.gauge.labels(f"{net}.{i}:9100", "node").set(1)
        exporter.gauge.labels(f"{net}.{i}:8080", "app.service").set(0 if i in numbers else 1)
    for i in (1, 2, 3):  # the others too: an earlier test may have left one crashed
        prometheus.wait_for(f'selfheal_test_service_up{{instance="{net}.{i}:8080"}} == '
                            f'{0 if i in numbers else 1}')


def build(tmp_path: Path, prometheus: RealPrometheus, exporter: Exporter,
          policy: dict[str, Any] | None = None, tier: int | None = None,
          net: str = NET) -> tuple[Controller, Fixer]:
    rules_dir = tmp_path / "rules"
    rules_dir.mkdir(exist_ok=True)
    remediations = (PROJECT_ROOT / "rules" / "remediations.yml").read_text()
    if tier is not None:
        remediations = remediations.replace("risk_tier: 1", f"risk_tier: {tier}")
    (rules_dir / "remediations.yml").write_text(remediations)
    (rules_dir / "policy.yml").write_text("mode: strict\n")
    write_fault_rules(rules_dir, FAULTS)
    rules = load_rules(rules_dir, PROJECT_ROOT / "ansible" / "roles")
    if policy:
        rules = Rules(rules.catalog, rules.faults, Policy.model_validate(policy))
    inv_path = tmp_path / "hosts.ini"
    inv_path.write_text("\n".join(f"h{i} selfheal_prometheus_host={net}.{i}" for i in (1, 2, 3)))
    inventory = load_inventory(inv_path)
    fixer = Fixer(exporter, {f"h{i}": i for i in (1, 2, 3)}, net)
    settings = PrometheusSettings(url=prometheus.url)  # type: ignore[call-arg]
    controller = Controller(
        rules=rules, inventory=inventory,
        source=PrometheusSource(connect(settings), settings),
        executor=AnsibleExecutor(AnsibleSettings(), inventory, tmp_path / "runs", run_fn=fixer),
        store=Store(f"sqlite:///{tmp_path / 'state.db'}", KEY))
    return controller, fixer


def states(controller: Controller) -> dict[str, str]:
    return {i.host: i.state.value for i in controller.store.incidents()}


def test_deferred_incident_is_healed_on_a_later_sweep(tmp_path: Path, prometheus: RealPrometheus,
                                                      exporter: Exporter) -> None:
    controller, fixer = build(tmp_path, prometheus, exporter,
                              {"max_concurrent": 1, "blast_radius": {"max_broken_fraction": 1}})
    crash(exporter, prometheus, 1, 2)
    first = controller.sweep()
    assert sorted(a.verdict for a in first.actions) == ["defer", "run"]
    assert first.exit_code == 0  # one healed, one waits its turn
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and set(states(controller).values()) != {"resolved"}:
        controller.sweep()
        time.sleep(0.3)
    assert states(controller) == {"h1": "resolved", "h2": "resolved"}
    assert sorted(t for call in fixer.calls for t in call) == ["h1", "h2"]


def test_approved_fix_still_obeys_the_limits(tmp_path: Path, prometheus: RealPrometheus,
                                            exporter: Exporter) -> None:
    controller, fixer = build(tmp_path, prometheus, exporter, {"approvers": ["alice"]}, tier=3)
    crash(exporter, prometheus, 3)
    report = controller.sweep()
    (action,) = report.actions
    assert action.state == S.AWAITING_APPROVAL and report.exit_code == 1
    incident = controller.store.get(action.incident_id or 0)
    assert incident is not None
    controller.store.approve(incident, "alice", time.time())
    disabled = Rules(controller.rules.catalog, controller.rules.faults,
                     Policy(mode="disabled", approvers=("alice",)))
    controller.rules = disabled
    (held,) = controller.sweep().actions
    assert held.state == S.HELD and "disabled" in held.reasons[0]
    assert fixer.calls == []


def test_approved_fix_runs(tmp_path: Path, prometheus: RealPrometheus,
                           exporter: Exporter) -> None:
    controller, fixer = build(tmp_path, prometheus, exporter, {"approvers": ["alice"]}, tier=3)
    crash(exporter, prometheus, 3)
    (action,) = controller.sweep().actions
    incident = controller.store.get(action.incident_id or 0)
    assert incident is not None
    controller.store.approve(incident, "alice", time.time() - 7200)  # expired approval
    assert [a.verdict for a in controller.sweep().actions] == ["ask"]
    incident = controller.store.get(action.incident_id or 0)
    assert incident is not None
    controller.store.approve(incident, "alice", time.time())
    (ran,) = controller.sweep().actions
    assert ran.state == S.RESOLVED and fixer.calls == [["h3"]]


def test_executor_error_escalates_one_and_heals_the_other(tmp_path: Path,
                                                          prometheus: RealPrometheus,
                                                          exporter: Exporter) -> None:
    controller, fixer = build(tmp_path, prometheus, exporter,
                              {"blast_radius": {"max_broken_fraction": 1}})
    fixer.explode_on = {"h1"}
    crash(exporter, prometheus, 1, 2)
    report = controller.sweep()
    by_host = {a.host: a for a in report.actions}
    assert by_host["h1"].state == S.ESCALATED and "blew up" in by_host["h1"].reasons[0]
    assert by_host["h2"].state == S.RESOLVED
    assert report.exit_code == 1
    assert controller.store.verify_audit() > 0
