"""KPIs from a real store: outcomes, times, false positives, interventions, rollbacks.

The exposition is read back with prometheus_client's parser and checked by promtool, since the
same families go to serve's /metrics and to the cron-mode textfile.
"""

from __future__ import annotations

import math
import subprocess
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from typer.testing import CliRunner

from orchestrator.cli.app import app
from orchestrator.core.lifecycle import advance
from orchestrator.kpi import Kpis, families
from orchestrator.models import Incident, IncidentState as S, Outcome, OutcomeStatus
from orchestrator.store.db import Store

PROMTOOL = "/usr/bin/promtool"


def walk(store: Store, incident: Incident, *states: S, at: float, **changes: object
         ) -> Incident:
    for state in states:
        after = advance(incident, state, at, **(changes if state is states[-1] else {}))
        incident = store.save_transition(incident, after, state.value)
    return incident


def run(store: Store, incident: Incident, phase: str, status: OutcomeStatus, at: float) -> None:
    run_id = store.start_run(incident.id, incident.host, "service_restart", phase, False, at)
    store.finish_run(run_id, incident.host, "service_restart", phase,
                     Outcome(status, at, at + 3, False), incident.id)


@pytest.fixture
def store(tmp_path: Path) -> Store:
    store = Store(f"sqlite:///{tmp_path / 'state.db'}", b"k" * 32)
    t = 1000.0
    # healed in 7 s, its fault dated by an alert 4 s before the incident opened
    healed = store.open_incident("h1", "service_crash", t, {"fault_started_at": t - 4})
    healed = walk(store, healed, S.DIAGNOSED, S.PLANNED, S.REMEDIATING, at=t + 1,
                  remediation_started_at=t + 1)
    run(store, healed, "remediate", OutcomeStatus.SUCCEEDED, t + 1)
    walk(store, healed, S.VERIFYING, S.RESOLVED, at=t + 7, resolved_at=t + 7)
    # failed to verify: rolled back
    rolled = store.open_incident("h2", "service_crash", t)
    rolled = walk(store, rolled, S.DIAGNOSED, S.PLANNED, S.REMEDIATING, at=t + 1,
                  remediation_started_at=t + 1)
    run(store, rolled, "remediate", OutcomeStatus.SUCCEEDED, t + 1)
    run(store, rolled, "rollback", OutcomeStatus.SUCCEEDED, t + 20)
    walk(store, rolled, S.VERIFYING, S.ROLLED_BACK, at=t + 25)
    # cleared by itself before any fix
    cleared = store.open_incident("h3", "disk_full", t)
    walk(store, cleared, S.DIAGNOSED, S.PLANNED, S.RESOLVED, at=t + 2, resolved_at=t + 2)
    # escalated, then a human says it was no fault at all
    wrong = store.open_incident("h1", "disk_full", t)
    wrong = walk(store, wrong, S.DIAGNOSED, S.ESCALATED, at=t + 1)
    store.mark_false_positive(wrong.id, "alice", t + 100)
    # still open: counted among the active ones only
    store.open_incident("h2", "disk_full", t + 50)
    store.audit("incident.approved", "h2/service_crash", {"incident": 2}, t + 3)
    store.audit("manual.remediate", "h3/service_restart", {}, t + 4)
    store.audit("manual.remediate", "h3/service_restart", {}, t + 5)
    return store


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def exposition(kpis: Kpis) -> str:
    registry = CollectorRegistry(auto_describe=False)

    class Collector:
        def collect(self):  # type: ignore[no-untyped-def]
            return families(kpis)

    registry.register(Collector())
    return generate_latest(registry).decode()


def test_the_store_gives_every_kpi(store: Store) -> None:
    got = samples(exposition(Kpis.from_store(store)))
    ended = "selfheal_incidents_ended_total"
    assert got[(ended, (("fault", "service_crash"), ("outcome", "healed")))] == 1
    assert got[(ended, (("fault", "service_crash"), ("outcome", "rolled_back")))] == 1
    assert got[(ended, (("fault", "disk_full"), ("outcome", "cleared")))] == 1
    # the false positive is counted apart, not as an escalation
    assert (ended, (("fault", "disk_full"), ("outcome", "escalated"))) not in got
    assert got[("selfheal_false_positives_total", (("fault", "disk_full"),))] == 1
    # healed / (healed + rolled back + escalated): the cleared one and the false positive out
    assert got[("selfheal_self_healing_success_ratio", ())] == 0.5
    heal = "selfheal_time_to_heal_seconds"
    assert got[(f"{heal}_count", (("fault", "service_crash"),))] == 1
    assert got[(f"{heal}_sum", (("fault", "service_crash"),))] == 7
    assert got[(f"{heal}_bucket", (("fault", "service_crash"), ("le", "5.0")))] == 0
    assert got[(f"{heal}_bucket", (("fault", "service_crash"), ("le", "10.0")))] == 1
    detect = "selfheal_time_to_detect_seconds"
    assert got[(f"{detect}_sum", (("fault", "service_crash"),))] == 4
    assert got[(f"{detect}_count", (("fault", "service_crash"),))] == 1
    kinds = {k: got[("selfheal_human_interventions_total", (("kind", k),))]
             for k in ("approval", "retry", "manual_run")}
    assert kinds == {"approval": 1, "retry": 0, "manual_run": 2}
    assert got[("selfheal_rollbacks_total", (("outcome", "succeeded"),))] == 1
    assert got[("selfheal_remediation_runs_total", (("outcome", "succeeded"),))] == 2
    assert got[("selfheal_incidents", (("state", "detected"),))] == 1


def test_promtool_accepts_the_exposition(store: Store) -> None:
    done = subprocess.run([PROMTOOL, "check", "metrics"], input=exposition(
        Kpis.from_store(store)), text=True, capture_output=True, check=False, timeout=30)
    assert done.returncode == 0, done.stdout + done.stderr


def test_no_incident_yet_is_a_nan_ratio_not_a_zero(tmp_path: Path) -> None:
    empty = Store(f"sqlite:///{tmp_path / 'empty.db'}", b"k" * 32)
    assert math.isnan(Kpis.from_store(empty).success_ratio)


def test_incidents_mark_false_positive_is_audited_with_the_name(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    state = tmp_path / "state"
    monkeypatch.setenv("SELFHEAL_STATE__DIR", str(state))
    monkeypatch.delenv("SELFHEAL_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    from orchestrator.cli.common import State
    from orchestrator.config import load_settings
    from orchestrator.wiring import store_for

    store = store_for(load_settings(None))
    incident = store.open_incident("web1", "service_crash", 1000.0)
    State._settings = None
    got = runner.invoke(app, ["incidents", "mark", str(incident.id), "--false-positive",
                              "--by", "bob", "--json"])
    assert got.exit_code == 0, got.output
    assert '"false_positive": true' in got.output
    marked = store.get(incident.id)
    assert marked is not None and marked.detail["false_positive"]["by"] == "bob"
    assert [r.action for r in store.audit_records()][-1] == "incident.false_positive"
    missing = runner.invoke(app, ["incidents", "mark", "999", "--false-positive"])
    assert missing.exit_code == 2 and "no incident 999" in missing.output
    nothing = runner.invoke(app, ["incidents", "mark", str(incident.id)])
    assert nothing.exit_code == 2 and "--false-positive" in nothing.output
