"""selfheal's health textfile after real sweeps against a real Prometheus, and from the CLI."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from orchestrator.config import PrometheusSettings
from orchestrator.engine import Controller
from orchestrator.health import record_sweep
from orchestrator.sources.prometheus import PrometheusSource, connect
from tests.integration.conftest import Exporter, RealPrometheus, free_port
from tests.integration.test_engine import publish, world  # noqa: F401  (world is a fixture)

pytestmark = pytest.mark.integration


def samples(path: Path) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(path.read_text())
            for s in family.samples}


def test_sweep_writes_its_health_and_keeps_the_last_success_when_blind(
        world: Controller, exporter: Exporter, prometheus: RealPrometheus,  # noqa: F811
        tmp_path: Path) -> None:
    hostile = "x.service; reboot"  # refused at planning: one escalated incident, no play
    publish(exporter, prometheus, 2, hostile, 0)
    path = tmp_path / "selfheal.prom"
    try:
        report = world.sweep()
        record_sweep(path, report, world.store)
    finally:
        exporter.gauge.remove("127.0.2.2:8080", hostile)
    got = samples(path)
    assert got[("selfheal_last_sweep_timestamp_seconds", ())] == report.finished_at
    assert got[("selfheal_last_successful_sweep_timestamp_seconds", ())] == report.finished_at
    assert got[("selfheal_sweep_duration_seconds", ())] == pytest.approx(
        report.finished_at - report.started_at)
    assert got[("selfheal_incidents", (("state", "escalated"),))] == 1
    assert got[("selfheal_remediation_runs_total", (("outcome", "succeeded"),))] == 0

    settings = PrometheusSettings(url=f"http://127.0.0.1:{free_port()}", timeout_s=1)  # type: ignore[call-arg]
    blind = dataclasses.replace(world, source=PrometheusSource(connect(settings), settings))
    later = blind.sweep()
    assert later.source_error is not None
    record_sweep(path, later, blind.store)
    got = samples(path)
    assert got[("selfheal_last_sweep_timestamp_seconds", ())] == later.finished_at
    assert got[("selfheal_last_successful_sweep_timestamp_seconds", ())] == report.finished_at


def test_cli_sweep_writes_the_textfile(tmp_path: Path, prometheus: RealPrometheus) -> None:
    (tmp_path / "hosts.ini").write_text("web1 ansible_host=127.0.0.1\n")
    config = tmp_path / "selfheal.yml"
    config.write_text(f"prometheus: {{url: '{prometheus.url}', timeout_s: 2}}\n"
                      "inventory: {path: hosts.ini}\nstate: {dir: state}\n"
                      "health: {textfile_path: textfile/selfheal.prom}\n")
    (tmp_path / "textfile").mkdir()
    done = subprocess.run([sys.executable, "-m", "orchestrator", "--config", str(config),
                           "sweep", "--json"], capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode in (0, 1), done.stderr
    got = samples(tmp_path / "textfile" / "selfheal.prom")
    assert got[("selfheal_last_successful_sweep_timestamp_seconds", ())] > 0
    assert got[("selfheal_incidents", (("state", "escalated"),))] == 0


def test_cli_sweep_goes_on_when_the_textfile_cannot_be_written(tmp_path: Path) -> None:
    (tmp_path / "hosts.ini").write_text("web1 ansible_host=127.0.0.1\n")
    config = tmp_path / "selfheal.yml"
    config.write_text(f"prometheus: {{url: 'http://127.0.0.1:{free_port()}', timeout_s: 1}}\n"
                      "inventory: {path: hosts.ini}\nstate: {dir: state}\n"
                      "health: {textfile_path: no-such-dir/selfheal.prom}\n")
    done = subprocess.run([sys.executable, "-m", "orchestrator", "--config", str(config),
                           "sweep", "--json"], capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.returncode == 1, done.stderr  # unknown data, as without the textfile
    assert "health textfile not written" in done.stderr
