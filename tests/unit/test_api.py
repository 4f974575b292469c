"""serve's webhook, in process: the real FastAPI app, a real SQLite store and a real intake.

Only the sweep loop is left out (``wake`` counts the wake-ups): what a woken sweep does is
tested against a real Prometheus in tests/integration/test_serve.py.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from orchestrator.api import create_app
from orchestrator.execute.inventory import Host, Inventory
from orchestrator.intake import Intake
from orchestrator.rules import load_rules
from orchestrator.store import schema
from orchestrator.store.db import Store
from tests.conftest import ROLES_DIR, RULES_DIR

TOKEN = "t0ken-for-tests"
FAULTS = load_rules(RULES_DIR, ROLES_DIR).faults
AUTH = {"Authorization": f"Bearer {TOKEN}"}


class Wakes:
    def __init__(self) -> None:
        self.count = 0
        self.hosts: list[frozenset[str]] = []  # the hosts each wake-up named
        self.event = threading.Event()

    def __call__(self, hosts: frozenset[str]) -> None:
        self.count += 1
        self.hosts.append(hosts)
        self.event.set()


def inventory() -> Inventory:
    return Inventory(Path("hosts.ini"), {
        f"web{i}": Host(f"web{i}", f"127.0.9.{i}", f"127.0.9.{i}", ("web",)) for i in (1, 2)})


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[TestClient, Store, Wakes]]:
    store = Store(f"sqlite:///{tmp_path / 'state.db'}", b"k" * 32)
    wakes = Wakes()
    intake = Intake(store, inventory, lambda: FAULTS, wakes, window_s=0.3)
    app = create_app(intake, store, TOKEN, 4096, alive=lambda: True, times=lambda: None,
                     sweeps=dict)
    yield TestClient(app), store, wakes
    intake.close()  # a batch window still open must not fire into the next test's logging


def alert(host: str = "127.0.9.1", fingerprint: str = "a1b2c3d4e5f60708",
          status: str = "firing", alertname: str = "ServiceDown", **labels: str) -> dict[str, Any]:
    return {"status": status, "labels": {"alertname": alertname, "instance": f"{host}:8080",
                                         **labels},
            "annotations": {"summary": "down"}, "startsAt": "2024-05-01T10:00:00.123456789Z",
            "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "http://prom/graph",
            "fingerprint": fingerprint}


def payload(*alerts: dict[str, Any]) -> dict[str, Any]:
    return {"version": "4", "groupKey": "{}:{alertname=\"ServiceDown\"}", "truncatedAlerts": 0,
            "status": "firing", "receiver": "selfheal", "groupLabels": {}, "commonLabels": {},
            "commonAnnotations": {}, "externalURL": "http://am", "alerts": list(alerts)}


def rows(store: Store, table: Any) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def test_wrong_or_missing_token_is_401_and_nothing_is_recorded(
        world: tuple[TestClient, Store, Wakes], caplog: pytest.LogCaptureFixture) -> None:
    client, store, wakes = world
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": TOKEN}):
        got = client.post("/api/v1/alert/immediate", json=payload(alert()), headers=headers)
        assert got.status_code == 401
        assert got.headers["www-authenticate"] == "Bearer"
    assert rows(store, schema.alerts) == 0 and rows(store, schema.audit) == 0
    assert wakes.count == 0
    assert caplog.text.count("missing or wrong bearer token") == 3


def test_immediate_keeps_the_alert_and_wakes_the_sweep_once(
        world: tuple[TestClient, Store, Wakes]) -> None:
    client, store, wakes = world
    got = client.post("/api/v1/alert/immediate", json=payload(alert()), headers=AUTH)
    assert got.status_code == 200, got.text
    assert got.json() == {"accepted": 1, "duplicates": 0, "refused": [], "sweep": "now",
                          "root_causes": [{"host": "web1", "fault": "ServiceDown",
                                           "subject": "", "alerts": 1}]}
    assert wakes.hosts == [frozenset({"web1"})]  # a sweep of the alert's host, not the fleet
    # Alertmanager re-sends the group on group_interval: a duplicate, no second sweep
    again = client.post("/api/v1/alert/immediate", json=payload(alert()), headers=AUTH)
    assert again.json()["duplicates"] == 1 and again.json()["sweep"] == "none"
    assert wakes.count == 1 and rows(store, schema.alerts) == 1
    # the same alert resolved is news: kept, and a sweep settles the incident
    done = client.post("/api/v1/alert/immediate", json=payload(alert(status="resolved")),
                       headers=AUTH)
    assert done.json()["accepted"] == 1 and wakes.count == 2
    assert rows(store, schema.alerts) == 2
    assert rows(store, schema.audit) == 0  # observations, not actions


def test_nanosecond_start_is_kept_and_dates_the_fault(world: tuple[TestClient, Store, Wakes]
                                                      ) -> None:
    client, store, _ = world
    client.post("/api/v1/alert/immediate", headers=AUTH,
                json=payload(alert(fault="service_crash")))
    start = 1714557600.123456  # 2024-05-01T10:00:00.123456Z (nanoseconds cut to micro)
    assert store.fault_started_at("web1", "service_crash", "", time.time()
                                  ) == pytest.approx(start)
    assert store.fault_started_at("web2", "service_crash", "", time.time()) is None
    client.post("/api/v1/alert/immediate", headers=AUTH,
                json=payload(alert(status="resolved", fault="service_crash")))
    assert store.fault_started_at("web1", "service_crash", "", time.time()) is None


def test_batch_merges_alerts_of_one_root_cause_into_one_sweep(
        world: tuple[TestClient, Store, Wakes]) -> None:
    client, _, wakes = world
    first = client.post("/api/v1/alert/batch", headers=AUTH, json=payload(
        alert(fingerprint="f1", fault="service_crash"),
        alert(fingerprint="f2", alertname="HealthzFailing", fault="service_crash"),
        alert(host="127.0.9.2", fingerprint="f3", fault="disk_full")))
    assert first.status_code == 200
    body = first.json()
    assert body["accepted"] == 3 and body["sweep"].startswith("in ")
    assert body["root_causes"] == [
        {"host": "web1", "fault": "service_crash", "subject": "", "alerts": 2},
        {"host": "web2", "fault": "disk_full", "subject": "", "alerts": 1}]
    second = client.post("/api/v1/alert/batch", headers=AUTH,
                         json=payload(alert(fingerprint="f4", fault="service_crash")))
    assert second.json()["accepted"] == 1
    assert wakes.count == 0  # the window is still open
    assert wakes.event.wait(5)
    time.sleep(0.5)  # a second window would have closed by now
    assert wakes.hosts == [frozenset({"web1", "web2"})]  # one sweep of both alerts' hosts


def test_an_alert_maps_to_its_catalog_fault_and_subject(world: tuple[TestClient, Store, Wakes]
                                                        ) -> None:
    client, store, _ = world
    got = client.post("/api/v1/alert/batch", headers=AUTH, json=payload(
        # as `selfheal alert-rules` writes them: alertname and fault label, series labels kept
        alert(fingerprint="u1", alertname="SelfhealUnitFailed", fault="unit_failed",
              unit="nginx.service"),
        alert(fingerprint="u2", alertname="SelfhealUnitFailed", fault="unit_failed",
              unit="cron.service"),
        # a rule of the team's own, named like the fault; the mount point tells which disk
        alert(fingerprint="d1", alertname="disk_full", mountpoint="/srv"),
        # our alertname without the fault label; a host-wide alert of a subject fault
        alert(host="127.0.9.2", fingerprint="s1", alertname="SelfhealServiceCrash")))
    assert got.json()["root_causes"] == [
        {"host": "web1", "fault": "disk_full", "subject": "mountpoint=/srv", "alerts": 1},
        {"host": "web1", "fault": "unit_failed", "subject": "unit=cron.service", "alerts": 1},
        {"host": "web1", "fault": "unit_failed", "subject": "unit=nginx.service", "alerts": 1},
        {"host": "web2", "fault": "service_crash", "subject": "", "alerts": 1}]
    now = time.time()
    # the time to detect of one unit's incident is dated by that unit's alert (or a host-wide
    # one), never by another unit's
    assert store.fault_started_at("web1", "unit_failed", "unit=nginx.service", now) is not None
    assert store.fault_started_at("web1", "unit_failed", "unit=ssh.service", now) is None
    assert store.fault_started_at("web2", "service_crash", "unit=demo.service", now) is not None


def test_alerts_for_hosts_outside_the_inventory_are_refused_and_logged(
        world: tuple[TestClient, Store, Wakes], caplog: pytest.LogCaptureFixture) -> None:
    client, store, wakes = world
    only_strangers = client.post("/api/v1/alert/immediate", headers=AUTH, json=payload(
        alert(host="10.1.2.3", fingerprint="f1"),
        {**alert(fingerprint="f2"), "labels": {"alertname": "NoHost"}}))
    assert only_strangers.status_code == 422
    assert only_strangers.json()["refused"] == [
        "alert ServiceDown (f1): '10.1.2.3:8080' is not an inventory host",
        "alert NoHost (f2): names no host (no instance or host label)"]
    assert rows(store, schema.alerts) == 0 and wakes.count == 0
    assert any("10.1.2.3:8080" in getattr(r, "reason", "") for r in caplog.records)
    mixed = client.post("/api/v1/alert/immediate", headers=AUTH, json=payload(
        alert(host="10.1.2.3", fingerprint="f1"), alert(fingerprint="f3"),
        {**alert(fingerprint="f4"), "labels": {"alertname": "ByName", "host": "web2"}}))
    assert mixed.status_code == 200
    assert mixed.json()["accepted"] == 2 and len(mixed.json()["refused"]) == 1


@pytest.mark.parametrize(("body", "field"), [
    ({"version": "3", "status": "firing", "alerts": []}, "version"),
    ({"version": "4", "status": "firing"}, "alerts"),
    (payload({**alert(), "startsAt": "yesterday"}), "alerts.0.startsAt"),
    (payload({**alert(), "startsAt": "2024-05-01T10:00:00"}), "alerts.0.startsAt"),  # no zone
    (payload({**alert(), "fingerprint": "../../etc"}), "alerts.0.fingerprint"),
    (payload({**alert(), "status": "exploded"}), "alerts.0.status"),
    (payload({**alert(), "labels": {"instance": 5}}), "alerts.0.labels.instance"),
])
def test_a_payload_that_is_not_alertmanagers_is_a_422_naming_the_field(
        world: tuple[TestClient, Store, Wakes], body: dict[str, Any], field: str) -> None:
    client, store, _ = world
    got = client.post("/api/v1/alert/batch", headers=AUTH, content=json.dumps(body))
    assert got.status_code == 422
    assert any(p.startswith(f"{field}:") for p in got.json()["problems"]), got.json()
    assert rows(store, schema.alerts) == 0


def test_not_json_is_a_422(world: tuple[TestClient, Store, Wakes]) -> None:
    client, _, _ = world
    got = client.post("/api/v1/alert/immediate", headers=AUTH, content=b"\xff{not json")
    assert got.status_code == 422


def test_a_body_over_the_limit_is_413_declared_or_streamed(
        world: tuple[TestClient, Store, Wakes]) -> None:
    client, store, _ = world
    big = json.dumps(payload(*[alert(fingerprint=f"f{i}") for i in range(40)])).encode()
    assert len(big) > 4096
    declared = client.post("/api/v1/alert/immediate", headers=AUTH, content=big)
    assert declared.status_code == 413
    streamed = client.post("/api/v1/alert/immediate", headers=AUTH,
                           content=iter([big[:3000], big[3000:]]))  # chunked: no length
    assert streamed.status_code == 413
    assert rows(store, schema.alerts) == 0


def test_healthz_and_metrics_answer_without_a_token(world: tuple[TestClient, Store, Wakes]
                                                    ) -> None:
    client, _, _ = world
    client.post("/api/v1/alert/immediate", json=payload(alert()))  # a 401, counted
    assert client.get("/healthz").json()["status"] == "ok"
    text = client.get("/metrics").text
    assert 'selfheal_webhook_requests_total{code="401",endpoint="immediate"} 1.0' in text
    assert "selfheal_self_healing_success_ratio NaN" in text
    assert "process_resident_memory_bytes" in text
