"""End to end through the service's own path: a crash on one lab host fires the Prometheus rule
generated from faults.yml, Alertmanager posts it to `selfheal serve` with a bearer token, serve
(sweeping only every 10 minutes unless woken) heals it, the other hosts untouched, and
Alertmanager's resolved notification closes the alert's episode: kept, it leaves the incident
closed with nothing open on the host, and no later incident is dated by that alert.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from sqlalchemy import select

from orchestrator import lab
from orchestrator.config import load_settings
from orchestrator.drill import await_drill
from orchestrator.lab.alerting import alert_path, sweeps
from orchestrator.models import Incident
from orchestrator.store import schema
from orchestrator.store.audit import read_key
from orchestrator.store.db import Store

pytestmark = pytest.mark.e2e


def test_a_crash_is_healed_through_alertmanager_and_serve(lab_fleet: None, tmp_path: Path
                                                          ) -> None:
    settings = load_settings(lab.lab_paths().settings_file)
    with alert_path(lab.lab_paths(), settings, settings.rules.dir, tmp_path) as chain:
        key = read_key(chain.state_dir / "audit.key")
        assert key is not None
        store = Store(f"sqlite:///{chain.state_dir / 'selfheal.db'}", key)
        result = await_drill(store, "service_crash", "vps1",
                             lambda f, h: lab.inject(f, h).injected_at, timeout_s=120)
        assert result.healed, result
        incident = store.get(result.incident_id or 0)
        assert incident is not None and "fault_started_at" in incident.detail  # via the alert
        with store.engine.connect() as conn:
            touched = {r.host for r in conn.execute(select(schema.runs.c.host))}
        assert touched == {"vps1"}
        print(f"through Alertmanager: detect {result.detect_s} s, heal "
              f"{result.end_to_end_s} s end to end")
        # the resolved notification: kept for the alert that fired, it closes the alert's
        # episode (a later crash is not dated by it) and leaves the incident closed, nothing
        # open on vps1; only the first fleet sweep ran, so alerts' sweeps did all of it
        resolved = until_resolved(store, incident, timeout_s=60)
        assert resolved, "no resolved notification from Alertmanager within 60 s"
        closed = store.get(incident.id)
        assert closed is not None and closed.state.value == "resolved"
        assert [i.id for i in store.active() if i.host == "vps1"] == []
        assert [i.id for i in store.incidents(host="vps1")] == [incident.id]
        deadline = time.monotonic() + 60  # the healing sweep is counted once it has ended
        while sweeps(chain.serve_url)["alert"] < 1 and time.monotonic() < deadline:
            time.sleep(0.2)
        ran = sweeps(chain.serve_url)
        assert ran["schedule"] == 1 and ran["alert"] >= 1, ran


def until_resolved(store: Store, incident: Incident, timeout_s: float) -> bool:
    """Wait until serve kept a resolved notification of the alert that dated ``incident`` and
    no alert about its fault still fires (nothing would date a later incident)."""
    alerts = schema.alerts
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with store.engine.connect() as conn:
            kept = conn.execute(select(alerts.c.id).where(
                alerts.c.host == incident.host, alerts.c.status == "resolved",
                alerts.c.starts_at == incident.detail["fault_started_at"])).first()
        if kept is not None and store.fault_started_at(
                incident.host, incident.fault, incident.subject, time.time()) is None:
            return True
        time.sleep(0.2)
    return False
