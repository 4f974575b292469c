"""selfheal's health textfile after real sweeps against a real Prometheus, and from the CLI."""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from orchestrator.config import PROJECT_ROOT, PrometheusSettings
from orchestrator.engine import Controller
from orchestrator.health import SweepHealth, record_sweep, write_textfile
from orchestrator.kpi import Kpis
from orchestrator.sources.prometheus import PrometheusSource, connect
from tests.integration.conftest import Exporter, RealPrometheus, free_port
from tests.integration.test_engine import publish, world  # noqa: F401  (world is a fixture)

pytestmark = pytest.mark.integration


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


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
    got = samples(path.read_text())
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
    got = samples(path.read_text())
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
    got = samples((tmp_path / "textfile" / "selfheal.prom").read_text())
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


def node_exporter() -> str | None:
    """Debian's binary: $SELFHEAL_NODE_EXPORTER, on PATH, or inside the cached lab image."""
    for candidate in (os.environ.get("SELFHEAL_NODE_EXPORTER"),
                      shutil.which("prometheus-node-exporter"), shutil.which("node_exporter"),
                      str(PROJECT_ROOT / ".cache/lab-image/rootfs/usr/bin/"
                          "prometheus-node-exporter")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def test_node_exporter_exports_the_textfile(tmp_path: Path) -> None:
    binary = node_exporter()
    if binary is None:
        pytest.skip("no node_exporter here (not installed, no lab image cached); "
                    "the file is still checked by the parser and promtool")
    write_textfile(tmp_path / "selfheal.prom", SweepHealth(
        started_at=10.0, finished_at=12.5, source_answered=True,
        kpis=Kpis(active={"escalated": 1}, runs={"succeeded": 2})))
    port = free_port()
    proc = subprocess.Popen([binary, "--collector.disable-defaults", "--collector.textfile",
                             f"--collector.textfile.directory={tmp_path}",
                             f"--web.listen-address=127.0.0.1:{port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
                    text = r.read().decode()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    got = samples(text)
    assert got[("node_textfile_scrape_error", ())] == 0
    assert got[("selfheal_last_successful_sweep_timestamp_seconds", ())] == 12.5
    assert got[("selfheal_incidents", (("state", "escalated"),))] == 1
    assert got[("selfheal_remediation_runs_total", (("outcome", "succeeded"),))] == 2
