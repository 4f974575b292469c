"""The forecast faults end to end: hours of real history in a real Prometheus, then the CLI.

``memory_exhaustion_forecast`` and ``disk_full_forecast`` fire on the forecast detector's
opinion, which needs hours of points. The test writes five hours of node_exporter-shaped series
for two hosts (f1 leaks memory in a service and fills /srv; f2 is steady) as OpenMetrics, turns
them into TSDB blocks with ``promtool tsdb create-blocks-from openmetrics`` (Prometheus' own
backfill) and starts a Prometheus on them. Then, through the real root app: ``baseline train``,
``diagnose`` (which steps the detectors itself), a one-shot ``sweep`` (whose detectors save their
opinions) and a ``sweep --dry-run`` in a new process's shoes, which diagnoses the forecasts from
the saved opinions, as a cron sweep does. The inventory's hosts are unreachable (port 9), so the
dry run's check mode can touch nothing.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from orchestrator.cli.app import app
from orchestrator.config import PROJECT_ROOT
from tests.integration.conftest import RealPrometheus, running_prometheus

pytestmark = pytest.mark.integration
runner = CliRunner()

HOURS = 5
STEP_S = 30
AHEAD_S = 900  # samples written ahead of the clock: see openmetrics()
SPAN_S = HOURS * 3600 + AHEAD_S
TRAIN_STEP_S = 10  # the detectors take one point per training step: diagnose waits one
UNIT = "selfheal-demo.service"
HOSTS = {"f1": "127.0.44.1", "f2": "127.0.44.2"}  # f1 leaks and fills; f2 is steady
GIB = 1 << 30


def _series(address: str, leaking: bool, elapsed: float) -> dict[str, list[tuple[str, float]]]:
    """Metric -> (labels, value) of one host ``elapsed`` seconds into the history."""
    node = f'instance="{address}:9100",job="node"'
    service = f'instance="{address}:9256",job="process"'
    grow = elapsed / SPAN_S if leaking else 0.0
    return {
        "up": [(node, 1), (service, 1)],
        "node_memory_MemTotal_bytes": [(node, 2 * GIB)],
        # f1: available memory falls from 60 % to 30 % over the span (zero in about 5 h)
        "node_memory_MemAvailable_bytes": [(node, (0.6 - 0.3 * grow) * 2 * GIB)],
        "node_filesystem_size_bytes": [(f'{node},mountpoint="/"', 10 * GIB),
                                       (f'{node},mountpoint="/srv"', GIB)],
        # f1: /srv falls from 60 % free to 30 % over the span (about 6 %/h); / stays at 80 %
        "node_filesystem_avail_bytes": [(f'{node},mountpoint="/"', 8 * GIB),
                                        (f'{node},mountpoint="/srv"', (0.6 - 0.3 * grow) * GIB)],
        "node_cpu_seconds_total": [(f'{node},cpu="0",mode="idle"', 0.9 * elapsed),
                                   (f'{node},cpu="0",mode="user"', 0.1 * elapsed)],
        "node_load1": [(node, 0.2)],
        "node_network_receive_bytes_total": [(f'{node},device="eth0"', 2000 * elapsed)],
        "node_network_transmit_bytes_total": [(f'{node},device="eth0"', 1000 * elapsed)],
        # the service's resident memory grows 20 -> 125 MB on f1 (about 5.8 KiB/s, under the
        # 128 MiB of service_memory_high: a slow leak, not yet a big one)
        "process_resident_memory_bytes": [(f'{service},unit="{UNIT}"',
                                           20e6 + 105e6 * grow)],
    }


def openmetrics(now: float) -> str:
    """Both hosts from HOURS before ``now`` to AHEAD_S after it, a sample every STEP_S seconds,
    grouped by metric as OpenMetrics wants.

    The samples ahead of the clock stand in for the scrapes the test's minutes would have had:
    a query at time t reads only samples at or before t, so every signal stays as fresh as a
    scraped one (30 s staleness limit, rates over 2 min) however slow the machine is."""
    start = now - HOURS * 3600
    samples: dict[str, list[str]] = {}
    for host, address in HOSTS.items():
        for elapsed in range(0, SPAN_S + 1, STEP_S):
            t = start + elapsed
            for metric, points in _series(address, host == "f1", elapsed).items():
                for labels, value in points:
                    samples.setdefault(metric, []).append(f"{metric}{{{labels}}} {value:.6g} "
                                                          f"{t:.3f}")
    return "".join("\n".join(lines) + "\n" for lines in samples.values()) + "# EOF\n"


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealPrometheus]:
    work = tmp_path_factory.mktemp("history")
    (work / "history.om").write_text(openmetrics(time.time()))
    subprocess.run(["/usr/bin/promtool", "tsdb", "create-blocks-from", "openmetrics",
                    str(work / "history.om"), str(work / "data")],
                   check=True, capture_output=True, timeout=120)
    with running_prometheus(work, "global: {scrape_interval: 15s}\n",
                            ready=f'node_load1{{instance="{HOSTS["f2"]}:9100"}}') as prom:
        yield prom


@pytest.fixture
def config(tmp_path: Path, history: RealPrometheus) -> Path:
    (tmp_path / "hosts.ini").write_text("".join(
        f"{host} ansible_host={address} ansible_port=9 selfheal_prometheus_host={address}\n"
        for host, address in HOSTS.items()))
    path = tmp_path / "selfheal.yml"
    path.write_text(f"prometheus: {{url: '{history.url}'}}\n"
                    f"inventory: {{path: hosts.ini}}\nrules: {{dir: '{PROJECT_ROOT / 'rules'}'}}\n"
                    "state: {dir: state}\nrca: {host_facts: false}\n")
    return path


def cli(config: Path, *args: str, code: int) -> Any:
    done = runner.invoke(app, ["--config", str(config), *args, "--json"])
    assert done.exit_code == code, done.output
    return json.loads(done.stdout)


def test_forecasts_are_diagnosed_by_diagnose_and_by_a_later_one_shot_sweep(config: Path) -> None:
    trained = cli(config, "baseline", "train", "--days", f"{HOURS / 24:.4f}", "--step",
                  str(TRAIN_STEP_S), code=0)
    assert trained["hosts"] == 2, trained
    # the detectors take one point per training step after the last trained one
    time.sleep(max(0.0, trained["window"]["end"] + TRAIN_STEP_S - time.time()))

    shown = cli(config, "diagnose", "f1", code=1)
    forecasts = {(a["signal"], a["source"]) for a in shown["anomalies"]}
    assert {("memory_available", "detect:forecast"),
            ("disk_available", "detect:forecast")} <= forecasts, shown
    faults = {(d["fault"], d["subject"]) for d in shown["diagnoses"]}
    assert faults == {("memory_exhaustion_forecast", f"unit={UNIT}"),
                      ("disk_full_forecast", "mountpoint=/srv")}, shown["diagnoses"]
    plans = {p["fault"]: p for p in shown["plans"]}
    assert plans["memory_exhaustion_forecast"]["remediation"] == "service_restart_memory"
    assert UNIT in plans["memory_exhaustion_forecast"]["params"].values()
    assert plans["disk_full_forecast"]["remediation"] == "disk_cleanup"
    assert "/srv" in plans["disk_full_forecast"]["params"].values()
    assert {r["fault"] for r in shown["rca"]} == {f for f, _ in faults}
    steady = cli(config, "diagnose", "f2", code=0)
    assert steady["health"] == "healthy" and steady["diagnoses"] == [], steady

    # a one-shot sweep judges with the opinions of the last saved step: none yet, so the
    # rules alone (the leak and the fill are evidence only) and nothing runs
    first = cli(config, "sweep", code=0)
    assert first["actions"] == [] and first["anomalies"]["findings"], first
    # the next one (a new process in cron: a new controller) has the opinions the first saved
    later = cli(config, "sweep", "--dry-run", code=1)
    hosts = {h["host"]: h for h in later["hosts"]}
    assert {d["fault"] for d in hosts["f1"]["diagnoses"]} == {f for f, _ in faults}
    assert hosts["f2"]["health"] == "healthy"
    acted = {(a["fault"], a["remediation"]) for a in later["actions"]}
    assert acted == {("memory_exhaustion_forecast", "service_restart_memory"),
                     ("disk_full_forecast", "disk_cleanup")}, later["actions"]
    # the hosts do not answer (port 9): the check mode reached nothing
    assert {(a["host"], a["verdict"], a["state"]) for a in later["actions"]} == {
        ("f1", "dry_run", "check_failed")}, later["actions"]
