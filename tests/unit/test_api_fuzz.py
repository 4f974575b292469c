"""Hypothesis-generated webhook bodies against the real app and store: never a 5xx, never a crash.

Bodies range from arbitrary bytes and arbitrary JSON to near-valid Alertmanager payloads with
one field bent; each must be answered 200, 401, 413 or 422. A wrong token is a 401 whatever the
body, and records nothing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings, strategies as st

from orchestrator.api import create_app
from orchestrator.intake import Intake
from orchestrator.store import schema
from orchestrator.store.db import Store
from tests.unit.test_api import AUTH, FAULTS, TOKEN, inventory, payload, rows

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=20), inner,
                                                                max_size=5),
    max_leaves=30)
moments = st.one_of(st.sampled_from(["2024-05-01T10:00:00Z", "0001-01-01T00:00:00Z",
                                     "9999-12-31T23:59:59.999999999+14:00", "",
                                     "2024-13-45T99:99:99Z", "1e309", "-1"]),
                    st.integers(), st.floats(), st.text(max_size=30))
alert_bodies = st.fixed_dictionaries({
    "status": st.sampled_from(["firing", "resolved", "", "FIRING"]) | st.text(max_size=10),
    "labels": st.dictionaries(st.sampled_from(["alertname", "instance", "host", "fault", "unit",
                                               "mountpoint", "x"])
                              | st.text(max_size=10),
                              st.sampled_from(["127.0.9.1:8080", "web2", "[::1]:9", ":", "",
                                               "unit_failed", "SelfhealDiskFull"])
                              | st.text(max_size=30), max_size=7),
    "startsAt": moments, "endsAt": moments,
    "fingerprint": st.sampled_from(["a1b2c3d4e5f60708", ""]) | st.text(max_size=70),
})


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> tuple[TestClient, Store]:
    path: Path = tmp_path_factory.mktemp("fuzz") / "state.db"
    store = Store(f"sqlite:///{path}", b"k" * 32)
    intake = Intake(store, inventory, lambda: FAULTS, lambda hosts: None, window_s=0.05)
    app = create_app(intake, store, TOKEN, 65536, alive=lambda: True, times=lambda: None,
                     sweeps=dict)
    return TestClient(app, raise_server_exceptions=True), store


FUZZ = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])


@FUZZ
@given(body=st.binary(max_size=300) | json_values.map(lambda v: json.dumps(v).encode()))
def test_any_body_is_answered_without_a_5xx(client: tuple[TestClient, Store], body: bytes
                                            ) -> None:
    got = client[0].post("/api/v1/alert/batch", headers=AUTH, content=body)
    assert got.status_code in (200, 413, 422), got.text


@FUZZ
@given(alerts=st.lists(alert_bodies, max_size=4),
       extra=st.dictionaries(st.sampled_from(["version", "status", "truncatedAlerts",
                                              "groupLabels"]), json_values, max_size=2))
def test_near_valid_payloads_are_answered_without_a_5xx(
        client: tuple[TestClient, Store], alerts: list[dict[str, Any]],
        extra: dict[str, Any]) -> None:
    body = {**payload(), "alerts": alerts, **extra}
    got = client[0].post("/api/v1/alert/immediate", headers=AUTH, content=json.dumps(body))
    assert got.status_code in (200, 413, 422), got.text


@FUZZ
@given(token=st.text(st.characters(blacklist_categories=("Cc", "Cs")), max_size=40).filter(
    lambda t: t != TOKEN), alerts=st.lists(alert_bodies, max_size=2))
def test_a_wrong_token_is_401_and_records_nothing(client: tuple[TestClient, Store], token: str,
                                                  alerts: list[dict[str, Any]]) -> None:
    before = rows(client[1], schema.alerts)
    got = client[0].post("/api/v1/alert/immediate",
                         headers={"Authorization": f"Bearer {token}".encode()},
                         content=json.dumps({**payload(), "alerts": alerts}))
    assert got.status_code == 401
    assert rows(client[1], schema.alerts) == before
