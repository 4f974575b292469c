"""End to end through the service's own path: a crash on one lab host fires the Prometheus rule
generated from faults.yml, Alertmanager posts it to `selfheal serve` with a bearer token, and
serve (sweeping only every 10 minutes unless woken) heals it; the other hosts are untouched.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from orchestrator import lab
from orchestrator.config import load_settings
from orchestrator.drill import await_drill
from orchestrator.lab.alerting import alert_path
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
