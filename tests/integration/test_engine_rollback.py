"""Verify or roll back, against a real Prometheus and store: ansible-runner's ``run`` is replaced
at the edge by a scripted play per phase (remediate, rollback), so each way a fix can go wrong is
played exactly: Ansible failing mid-play, the host dropping off mid-play, a fix that ran but
cannot fix (the verify window passes), and a fix that works. A remediation with a role rollback
must run it, end ``rolled_back`` and page; an unreachable host is never rolled back blind.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from orchestrator.config import PROJECT_ROOT, AnsibleSettings, PrometheusSettings
from orchestrator.engine import Controller
from orchestrator.execute.inventory import load_inventory
from orchestrator.execute.runner import AnsibleExecutor
from orchestrator.models import IncidentState as S
from orchestrator.rules import load_rules
from orchestrator.sources.prometheus import PrometheusSource, connect
from orchestrator.store.db import Store
from tests.conftest import write_fault_rules
from tests.integration.conftest import Exporter, RealPrometheus
from tests.integration.test_engine import FAULTS
from tests.integration.test_engine_guardrails import FakeResult, crash

KEY = b"k" * 32
pytestmark = pytest.mark.integration
NET = "127.0.6"  # this module's hosts
# service_restart's role, but with a rollback: the engine's rollback path on a real catalog entry
CATALOG = """
remediations:
  service_restart:
    role: service_restart
    description: test entry with a rollback
    risk_tier: 1
    cooldown_s: 0
    check_first: false
    params:
      service_restart_unit: {from_label: unit, pattern: '[a-z.]+'}
      service_restart_health_url: {template: 'http://{instance}/healthz', pattern: '.+'}
    verify: {signal: service_up, timeout_s: 2}
    rollback: role
  unit_restart:
    role: service_restart
    description: the project's verify signal must exist
    risk_tier: 1
    params:
      service_restart_unit: {from_label: unit, pattern: '[a-z.]+'}
    verify: {signal: unit_failed}
    rollback: none
"""


@dataclass
class Script:
    """The play each phase plays: "fix", "fail" (a task failed mid-play), "drop" (the host
    went unreachable mid-play) or "noop" (ran, changed nothing useful)."""

    exporter: Exporter
    remediate: str
    phases: list[str] = field(default_factory=list)

    def __call__(self, **kwargs: Any) -> FakeResult:
        phase = Path(kwargs["playbook"]).stem
        host = kwargs["limit"]
        self.phases.append(phase)
        how = self.remediate if phase == "remediate" else "fix"
        if how == "fix" and phase == "remediate":
            self.exporter.gauge.labels(f"{NET}.1:8080", "app.service").set(1)
        if how == "drop":
            return FakeResult("failed", 4, {"dark": {host: 1}, "ok": {host: 1}})
        if how == "fail":
            return FakeResult("failed", 2, {"failures": {host: 1}, "ok": {host: 2},
                                            "changed": {host: 1}})
        return FakeResult("successful", 0, {"ok": {host: 2}, "changed": {host: 1}})


def build(tmp_path: Path, prometheus: RealPrometheus, script: Script) -> Controller:
    rules_dir = tmp_path / "rules"
    rules_dir.mkdir()
    (rules_dir / "remediations.yml").write_text(CATALOG)
    (rules_dir / "policy.yml").write_text("mode: strict\n")
    write_fault_rules(rules_dir, FAULTS)
    rules = load_rules(rules_dir, PROJECT_ROOT / "ansible" / "roles")
    (tmp_path / "hosts.ini").write_text(
        "\n".join(f"h{i} selfheal_prometheus_host={NET}.{i}" for i in (1, 2, 3)))
    inventory = load_inventory(tmp_path / "hosts.ini")
    settings = PrometheusSettings(url=prometheus.url)  # type: ignore[call-arg]
    return Controller(
        rules=rules, inventory=inventory, source=PrometheusSource(connect(settings), settings),
        executor=AnsibleExecutor(AnsibleSettings(), inventory, tmp_path / "runs", run_fn=script),
        store=Store(f"sqlite:///{tmp_path / 'state.db'}", KEY), verify_poll_s=0.2)


@pytest.mark.parametrize(("play", "state", "phases", "note"), [
    ("fail", S.ROLLED_BACK, ["remediate", "rollback"], "play failed; rollback succeeded"),
    ("noop", S.ROLLED_BACK, ["remediate", "rollback"], "not healthy within the verify timeout"),
    ("drop", S.ESCALATED, ["remediate"], "unreachable"),
    ("fix", S.RESOLVED, ["remediate"], "healthy on a fresh sample"),
])
def test_a_fix_is_verified_or_rolled_back_and_a_human_is_told(
        tmp_path: Path, prometheus: RealPrometheus, exporter: Exporter,
        play: str, state: S, phases: list[str], note: str) -> None:
    script = Script(exporter, play)
    controller = build(tmp_path, prometheus, script)
    told: list[tuple[str, str]] = []
    controller.notify = lambda incident, why: told.append((incident.state.value, why))
    crash(exporter, prometheus, 1, net=NET)
    try:
        (action,) = controller.sweep().actions
        assert action.state == state, action
        assert script.phases == phases
        assert any(note in reason for reason in action.reasons), action.reasons
        if state is not S.RESOLVED:
            assert action.needs_human and told and told[-1][0] == state.value
            runs = [r for r in controller.store.history(0) if r.host == "h1"]
            assert runs and all(r.failed for r in runs)  # counts against the breaker
    finally:
        exporter.gauge.labels(f"{NET}.1:8080", "app.service").set(1)
