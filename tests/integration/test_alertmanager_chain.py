"""A real chain: Prometheus rules generated from faults.yml fire, Alertmanager 0.25 posts them
with a bearer token to a real `selfheal serve`, whose woken sweep opens (and later settles) the
incident. The serve sweep interval is 10 minutes, so only the alert can have woken it; the
policy is `disabled`, so the fault is held and nothing runs on this machine.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from sqlalchemy import select

from orchestrator.alert_rules import alerting_rules
from orchestrator.config import PROJECT_ROOT
from orchestrator.lab.alerting import alertmanager_config
from orchestrator.rules import load_rules
from orchestrator.store import schema
from tests.conftest import write_fault_rules
from tests.integration.conftest import PROMETHEUS, Exporter, RealPrometheus, free_port
from tests.integration.test_serve import FAULTS, NET, TOKEN, running_serve, until

pytestmark = pytest.mark.integration
ALERTMANAGER = "/usr/bin/prometheus-alertmanager"


def spawn(argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=log.open("wb"))


@pytest.fixture
def chain(tmp_path: Path, exporter: Exporter) -> Iterator[tuple[RealPrometheus, int]]:
    """Alertmanager routing to serve's port, and a Prometheus with the generated rules."""
    if not Path(ALERTMANAGER).exists():
        pytest.fail(f"{ALERTMANAGER} missing: run `make deps` (prometheus-alertmanager)")
    rules_dir = tmp_path / "rules-for-prometheus"
    for name in ("remediations.yml", "policy.yml"):
        rules_dir.mkdir(exist_ok=True)
        (rules_dir / name).write_text((PROJECT_ROOT / "rules" / name).read_text())
    write_fault_rules(rules_dir, FAULTS)
    data, _ = alerting_rules(load_rules(rules_dir, PROJECT_ROOT / "ansible" / "roles").faults)
    (tmp_path / "alerts.yml").write_text(yaml.safe_dump(data))
    serve_port, am_port, prom_port = free_port(), free_port(), free_port()
    (tmp_path / "token").write_text(TOKEN)
    (tmp_path / "alertmanager.yml").write_text(
        yaml.safe_dump(alertmanager_config(serve_port, tmp_path / "token", group_wait="1s")))
    am = spawn([ALERTMANAGER, f"--config.file={tmp_path / 'alertmanager.yml'}",
                f"--storage.path={tmp_path / 'am-data'}",
                f"--web.listen-address=127.0.0.1:{am_port}", "--cluster.listen-address="],
               tmp_path / "alertmanager.log")
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(tmp_path / "alerts.yml")],
        "alerting": {"alertmanagers": [{"static_configs": [
            {"targets": [f"127.0.0.1:{am_port}"]}]}]},
        "scrape_configs": [{"job_name": "exporter", "honor_labels": True, "static_configs": [
            {"targets": [f"127.0.0.1:{exporter.port}"]}]}]}))
    prom = spawn([PROMETHEUS, f"--config.file={tmp_path / 'prometheus.yml'}",
                  f"--storage.tsdb.path={tmp_path / 'prom-data'}",
                  f"--web.listen-address=127.0.0.1:{prom_port}"], tmp_path / "prometheus.log")
    prometheus = RealPrometheus(f"http://127.0.0.1:{prom_port}", prom)
    try:
        prometheus.wait_for("up")
        yield prometheus, serve_port
    finally:
        for proc in (prom, am):
            proc.terminate()
            proc.wait(timeout=20)


def test_a_fault_fires_the_generated_rule_alertmanager_posts_serve_holds_then_settles(
        tmp_path: Path, exporter: Exporter, chain: tuple[RealPrometheus, int]) -> None:
    prometheus, port = chain
    with running_serve(tmp_path, prometheus.url, exporter, prometheus, port) as serve:
        store = serve.store()
        crashed = time.monotonic()
        exporter.gauge.labels(f"{NET}.2:8080", "selfheal-demo.service").set(0)
        incident = until(lambda: store.incidents(host="h2"), 60, "an incident for h2")[0]
        opened_s = time.monotonic() - crashed
        assert incident.fault == "service_crash"
        assert "fault_started_at" in incident.detail  # dated by Alertmanager's startsAt
        until(lambda: store.get(incident.id).state.value == "held", 15, "held (policy off)")
        assert store.incidents(host="h1") == [] and store.incidents(host="h3") == []
        exporter.gauge.labels(f"{NET}.2:8080", "selfheal-demo.service").set(1)
        until(lambda: store.get(incident.id).state.value == "resolved", 60,
              "settled after the resolved notification")
        with store.engine.connect() as conn:
            statuses = [r.status for r in conn.execute(select(schema.alerts.c.status).where(
                schema.alerts.c.host == "h2"))]
        assert statuses.count("firing") == 1 and statuses.count("resolved") == 1, statuses
        metrics = serve.metrics()
        assert 'selfheal_webhook_requests_total{code="200",endpoint="batch"}' in metrics
        assert 'code="401"' not in metrics  # Alertmanager sent the token
        print(f"fault to incident via Alertmanager: {opened_s:.1f} s")
