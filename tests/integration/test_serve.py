"""`selfheal serve` as a process against a real Prometheus: an alert wakes a sweep of its host.

The sweep interval is set to 10 minutes, so any sweep after the first was woken by an alert, as
serve's own count of sweeps by trigger (/metrics) says. The policy's mode is ``disabled``, so a
diagnosed fault is held and nothing runs on this machine.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator.config import PROJECT_ROOT
from orchestrator.models import Incident
from orchestrator.store.audit import read_key
from orchestrator.store.db import Store
from tests.conftest import write_fault_rules
from tests.integration.conftest import Exporter, RealPrometheus, free_port

pytestmark = pytest.mark.integration
TOKEN = "serve-test-token"
NET = "127.0.46"  # this file's hosts, no other test's: the exporter is shared by the session
FAULTS = f"""
signals:
  node_up: {{promql: 'selfheal_test_service_up{{unit="node",instance=~"{NET}.*"}}',
             firing_when: "== 0"}}
  service_up: {{promql: 'selfheal_test_service_up{{unit!="node",instance=~"{NET}.*"}}',
                firing_when: "== 0"}}
faults:
  service_crash:
    description: test
    when_firing: [service_up]
    when_healthy: [node_up]
    remediations: [service_restart]
"""


@dataclass
class Serve:
    url: str
    proc: subprocess.Popen[str]
    state: Path

    def post(self, path: str, body: dict[str, Any], token: str = TOKEN
             ) -> tuple[int, dict[str, Any]]:
        request = urllib.request.Request(
            f"{self.url}{path}", data=json.dumps(body).encode(), method="POST",
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=10) as resp:
                return resp.status, json.load(resp)
        except urllib.error.HTTPError as exc:
            return exc.code, json.load(exc)

    def metrics(self) -> str:
        with urllib.request.urlopen(f"{self.url}/metrics", timeout=10) as resp:
            return resp.read().decode()

    def sweeps(self) -> dict[str, float]:
        """Sweeps so far by trigger: schedule (the fleet) or alert (the alert's hosts)."""
        return {line.split('"')[1]: float(line.split()[-1])
                for line in self.metrics().splitlines()
                if line.startswith("selfheal_sweeps_total{")}

    def last_sweep(self) -> float:
        for line in self.metrics().splitlines():
            if line.startswith("selfheal_last_sweep_timestamp_seconds "):
                return float(line.split()[1])
        return 0.0

    def store(self) -> Store:
        key = read_key(self.state / "audit.key")
        assert key is not None
        return Store(f"sqlite:///{self.state / 'selfheal.db'}", key)


def until(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.1)
    raise AssertionError(f"{what}: not within {timeout} s")


@contextmanager
def running_serve(tmp_path: Path, prometheus_url: str, exporter: Exporter,
                  prometheus: RealPrometheus, port: int | None = None) -> Iterator[Serve]:
    """serve over hosts h1-h3 ({NET}.1-3), every series healthy, policy mode disabled."""
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "remediations.yml").write_text((PROJECT_ROOT / "rules" / "remediations.yml")
                                            .read_text())
    policy = yaml.safe_load((PROJECT_ROOT / "rules" / "policy.yml").read_text())
    (rules / "policy.yml").write_text(yaml.safe_dump({**policy, "mode": "disabled"}))
    write_fault_rules(rules, FAULTS)
    (tmp_path / "hosts.ini").write_text("".join(
        f"h{i} ansible_connection=local selfheal_prometheus_host={NET}.{i}\n" for i in (1, 2, 3)))
    port = port or free_port()
    (tmp_path / "selfheal.yml").write_text(yaml.safe_dump({
        "prometheus": {"url": prometheus_url}, "inventory": {"path": "hosts.ini"},
        "state": {"dir": "state"}, "rules": {"dir": "rules"},
        "serve": {"listen": f"127.0.0.1:{port}", "sweep_every_s": 600},
        # the host-facts play of root-cause analysis would hold each new incident's sweep
        # for seconds here; what is tested is the wake-up, not the analysis
        "rca": {"in_sweep": False}}))
    for i in (1, 2, 3):
        exporter.gauge.labels(f"{NET}.{i}:9100", "node").set(1)
        exporter.gauge.labels(f"{NET}.{i}:8080", "selfheal-demo.service").set(1)
    prometheus.wait_for(f'selfheal_test_service_up{{instance="{NET}.3:8080"}} == 1')
    proc = subprocess.Popen(
        [sys.executable, "-m", "orchestrator", "--config", str(tmp_path / "selfheal.yml"),
         "serve"], env={**os.environ, "SELFHEAL_SERVE__TOKEN": TOKEN},
        stdout=subprocess.PIPE, stderr=(tmp_path / "serve.log").open("w"), text=True)
    running = Serve(f"http://127.0.0.1:{port}", proc, tmp_path / "state")

    def first_sweep() -> float:
        try:
            return running.last_sweep()
        except OSError:
            return 0.0

    try:
        until(first_sweep, 60, "serve up with its first sweep")
        yield running
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        log = (tmp_path / "serve.log").read_text()
        for i in (1, 2, 3):  # leave no series behind for the tests after this one
            exporter.gauge.remove(f"{NET}.{i}:8080", "selfheal-demo.service")
            exporter.gauge.remove(f"{NET}.{i}:9100", "node")
        assert proc.returncode == 0, log[-3000:]
        assert "Traceback" not in log, log[-3000:]


@pytest.fixture
def serve(tmp_path: Path, prometheus: RealPrometheus, exporter: Exporter) -> Iterator[Serve]:
    with running_serve(tmp_path, prometheus.url, exporter, prometheus) as running:
        yield running


def firing(host: str, started: float, status: str = "firing") -> dict[str, Any]:
    moment = datetime.fromtimestamp(started, UTC).isoformat().replace("+00:00", "Z")
    return {"version": "4", "groupKey": "g", "status": status, "receiver": "selfheal",
            "alerts": [{"status": status, "fingerprint": "fp" + host.replace(".", ""),
                        "labels": {"alertname": "ServiceDown", "fault": "service_crash",
                                   "instance": f"{host}:8080", "unit": "selfheal-demo.service"},
                        "startsAt": moment, "endsAt": "0001-01-01T00:00:00Z"}]}


def incidents_on(store: Store, host: str) -> list[Incident]:
    return store.incidents(host=host)


def test_an_alert_wakes_a_sweep_of_its_host_that_diagnoses_holds_and_settles(
        serve: Serve, exporter: Exporter, prometheus: RealPrometheus) -> None:
    store = serve.store()
    assert serve.sweeps() == {"schedule": 1, "alert": 0}  # the next fleet sweep: in 10 minutes
    # an alert for a host whose metrics are healthy: a sweep runs, but no incident is opened
    status, body = serve.post("/api/v1/alert/immediate", firing(f"{NET}.1", time.time()))
    assert status == 200 and body["sweep"] == "now"
    until(lambda: serve.sweeps()["alert"] >= 1, 15, "a sweep woken by the alert")
    assert incidents_on(store, "h1") == []
    # Alertmanager tells of h2 before this Prometheus shows its crash (another Prometheus
    # fired the alert): the woken sweep finds nothing, and h2 is swept again while its alert
    # fires; h3 crashes too, but no alert tells of it
    began = time.time() - 3.0
    status, body = serve.post("/api/v1/alert/immediate", firing(f"{NET}.2", began))
    assert status == 200, body
    for i in (3, 2):  # one scrape shows both
        exporter.gauge.labels(f"{NET}.{i}:8080", "selfheal-demo.service").set(0)
    incident = until(lambda: incidents_on(store, "h2"), 25, "an incident for h2")[0]
    assert incident.fault == "service_crash"
    held = until(lambda: store.get(incident.id).state.value == "held", 15, "held (mode off)")
    assert held
    assert incident.detail["fault_started_at"] == pytest.approx(began, abs=0.001)
    # no sweep but the alerts' ran, so an alert's sweep opened it; it covered h2 alone (h3's
    # crash waits for the fleet sweep), yet its guardrails counted the whole fleet's crashes
    assert serve.sweeps()["schedule"] == 1
    assert incidents_on(store, "h1") == [] and incidents_on(store, "h3") == []
    notes = [t["note"] for t in store.transitions(incident.id) if t["to"] == "held"]
    assert any("2 of 3 hosts are broken" in note for note in notes), notes
    # resolved: the fault is gone in Prometheus too, and the woken sweep settles the incident
    for i in (2, 3):
        exporter.gauge.labels(f"{NET}.{i}:8080", "selfheal-demo.service").set(1)
        prometheus.wait_for(f'selfheal_test_service_up{{instance="{NET}.{i}:8080"}} == 1')
    status, _ = serve.post("/api/v1/alert/immediate", firing(f"{NET}.2", began, "resolved"))
    assert status == 200
    until(lambda: store.get(incident.id).state.value == "resolved", 15, "settled")
    assert serve.sweeps()["schedule"] == 1
    text = serve.metrics()
    assert ('selfheal_incidents_ended_total{fault="service_crash",outcome="cleared"} 1.0'
            in text)
    assert 'selfheal_time_to_detect_seconds_count{fault="service_crash"} 1.0' in text


def test_a_wrong_token_records_nothing(serve: Serve) -> None:
    status, _ = serve.post("/api/v1/alert/immediate", firing(f"{NET}.2", time.time()),
                           token="wrong")
    assert status == 401
    store = serve.store()
    assert store.fault_started_at("h2", "service_crash", "", time.time() + 1) is None
    assert store.audit_records() == []  # nothing happened on a healthy fleet, nothing by us
