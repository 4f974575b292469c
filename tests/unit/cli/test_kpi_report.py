"""`selfheal report`: the KPIs of a real store over a window, as text, JSON and a page."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from orchestrator.cli.app import app
from orchestrator.config import load_settings
from orchestrator.models import IncidentState as S, OutcomeStatus
from orchestrator.wiring import store_for
from tests.unit.test_kpi import run, walk


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SELFHEAL_STATE__DIR", str(tmp_path / "state"))
    monkeypatch.delenv("SELFHEAL_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    store = store_for(load_settings(None))
    now = time.time()
    old = store.open_incident("h9", "disk_full", now - 30 * 86_400)  # outside a 7-day window
    walk(store, old, S.DIAGNOSED, S.ESCALATED, at=now - 30 * 86_400)
    for host, age in (("h1", 3600.0), ("h2", 2 * 86_400.0)):
        t = now - age
        healed = store.open_incident(host, "service_crash", t, {"fault_started_at": t - 2})
        healed = walk(store, healed, S.DIAGNOSED, S.PLANNED, S.REMEDIATING, at=t + 1,
                      remediation_started_at=t + 1, remediation="service_restart")
        run(store, healed, "remediate", OutcomeStatus.SUCCEEDED, t + 1)
        walk(store, healed, S.VERIFYING, S.RESOLVED, at=t + 6, resolved_at=t + 6)
    return tmp_path


def test_the_window_counts_only_its_incidents(state: Path) -> None:
    got = CliRunner().invoke(app, ["report", "--since", "7d", "--json"])
    assert got.exit_code == 0, got.output
    f = json.loads(got.output)
    assert f["outcomes"] == [{"fault": "service_crash", "outcome": "healed", "incidents": 2}]
    assert f["success_ratio"] == 1.0
    assert f["time_to_heal_s"] == {"count": 2, "mean": 6.0, "median": 6.0, "p90": 6.0}
    assert f["time_to_detect_s"]["count"] == 2 and f["time_to_detect_s"]["mean"] == 2.0
    assert sum(f["opened"]) == 2 and len(f["opened"]) == 7
    wide = json.loads(CliRunner().invoke(app, ["report", "--since", "5w", "--json"]).output)
    assert wide["success_ratio"] == pytest.approx(2 / 3, abs=0.001)  # the escalation counts


def test_text_and_html(state: Path) -> None:
    page = state / "kpis.html"
    got = CliRunner().invoke(app, ["report", "--since", "24h", "--html", str(page)])
    assert got.exit_code == 0, got.output
    assert "success rate" in got.output and "per hour" in got.output
    text = page.read_text()
    assert text.startswith("<!doctype html>") and "service_crash" in text and "<svg" in text


def test_a_bad_window_names_the_form(state: Path) -> None:
    got = CliRunner().invoke(app, ["report", "--since", "a week"])
    assert got.exit_code == 2 and "30m, 24h, 7d or 2w" in got.output


def test_incidents_stats_shows_records_and_the_order(state: Path) -> None:
    got = CliRunner().invoke(app, ["incidents", "stats", "--json"])
    assert got.exit_code == 0, got.output
    rows = {(r["fault"], r["remediation"]): r for r in json.loads(got.output)["remediations"]}
    crash = rows[("service_crash", "service_restart")]
    assert (crash["healed"], crash["failed"], crash["rank"]) == (2, 0, 1)
    assert crash["score"] == 0.75
    assert crash["recurring"] == {} and crash["recurring_window_s"] == 86_400
    # back on h1 20 h before its last time: within the day policy.yml counts returns over
    store_for(load_settings(None)).open_incident("h1", "service_crash", time.time() - 72_000)
    again = json.loads(CliRunner().invoke(app, ["incidents", "stats", "--json"]).output)
    assert next(r["recurring"] for r in again["remediations"]
                if r["fault"] == "service_crash") == {"h1": 2}
    text = CliRunner().invoke(app, ["incidents", "stats"])
    assert text.exit_code == 0 and "service_restart" in text.output
    assert "back within 24 h" in text.output


def test_incidents_of_two_units_on_one_host_are_two_in_the_kpis(state: Path) -> None:
    store = store_for(load_settings(None))
    t = time.time() - 600
    ids = []
    for unit in ("nginx.service", "cron.service"):
        incident = store.open_incident("h3", "unit_failed", t, {"subject": f"unit={unit}",
                                                                 "fault_started_at": t - 1})
        incident = walk(store, incident, S.DIAGNOSED, S.PLANNED, S.REMEDIATING, at=t + 1,
                        remediation_started_at=t + 1, remediation="unit_restart")
        run(store, incident, "remediate", OutcomeStatus.SUCCEEDED, t + 1)
        walk(store, incident, S.VERIFYING, S.RESOLVED, at=t + 4, resolved_at=t + 4)
        ids.append(incident.id)
    marked = CliRunner().invoke(app, ["incidents", "mark", str(ids[1]), "--false-positive",
                                      "--json"])
    assert marked.exit_code == 0, marked.output
    f = json.loads(CliRunner().invoke(app, ["report", "--since", "24h", "--json"]).output)
    assert {"fault": "unit_failed", "outcome": "healed", "incidents": 1} in f["outcomes"]
    assert f["false_positives"] == 1
    assert f["time_to_detect_s"]["count"] == 3  # h1's crash and both units
    text = CliRunner().invoke(app, ["report", "--since", "24h"])
    assert text.exit_code == 0 and "unit_failed" in text.output
