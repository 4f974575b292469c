"""The lab's alert path: Prometheus rules from faults.yml -> Alertmanager -> ``selfheal serve``.

Called by ``benchmarks/mttr.py --via alertmanager`` and ``tests/e2e/test_alertmanager.py``. Beside
the running lab it starts, all on loopback and under ``work``: a second Prometheus with the lab's
scrape config plus the generated alerting rules (the lab's own Prometheus stays as it is), the
machine's Alertmanager 0.25 (no clustering) routing every alert to serve's ``/alert/batch`` with
a bearer token, and ``selfheal serve`` over the lab's settings with its own state dir and rules
dir, sweeping the fleet only every 10 minutes, so what it heals an alert woke it for. It yields
once serve's first fleet sweep is done, and its sweeps run no root-cause analysis (whose host-facts
play would hold the loop up to ``rca.deadline_s`` after each new incident, delaying the next
alert's sweep). Everything is stopped on exit. ``selfheal lab up`` starts none of this.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from orchestrator.alert_rules import alerting_rules
from orchestrator.config import Settings
from orchestrator.errors import PermanentError
from orchestrator.lab.paths import LabPaths
from orchestrator.rules import load_rules

ALERTMANAGER = "/usr/bin/prometheus-alertmanager"
PROMETHEUS = "/usr/bin/prometheus"


@dataclass(frozen=True)
class AlertPath:
    serve_url: str
    state_dir: Path  # serve's store: selfheal.db and audit.key


def alertmanager_config(serve_port: int, token_file: Path, group_wait: str) -> dict[str, Any]:
    """Alertmanager's configuration routing every alert to serve's ``/alert/batch`` on loopback,
    with the bearer token read from ``token_file``, resolved notifications included."""
    return {
        "route": {"receiver": "selfheal", "group_by": ["alertname", "instance"],
                  "group_wait": group_wait, "group_interval": "1s", "repeat_interval": "1h"},
        "receivers": [{"name": "selfheal", "webhook_configs": [{
            "url": f"http://127.0.0.1:{serve_port}/api/v1/alert/batch", "send_resolved": True,
            "http_config": {"authorization": {"type": "Bearer",
                                              "credentials_file": str(token_file)}}}]}],
    }


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(url: str, timeout: float, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise PermanentError(f"{log.stem} exited: {log.read_text()[-800:]}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.2)
    raise PermanentError(f"{url} did not answer within {timeout:.0f} s; see {log}")


def sweeps(serve_url: str) -> dict[str, float]:
    """serve's sweeps so far by trigger: ``schedule`` (the fleet) and ``alert`` (its /metrics)."""
    with urllib.request.urlopen(f"{serve_url}/metrics", timeout=10) as resp:
        return {line.split('"')[1]: float(line.split()[-1])
                for line in resp.read().decode().splitlines()
                if line.startswith("selfheal_sweeps_total{")}


def _first_sweep(path: AlertPath, timeout: float, proc: subprocess.Popen[bytes], log: Path
                 ) -> None:
    """Wait until serve's first fleet sweep is done: a fault injected later is seen by an
    alert's sweep, not by that one."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise PermanentError(f"serve exited: {log.read_text()[-800:]}")
        if sweeps(path.serve_url).get("schedule", 0) >= 1:
            return
        time.sleep(0.2)
    raise PermanentError(f"serve's first sweep did not end within {timeout:.0f} s; see {log}")


@contextmanager
def alert_path(paths: LabPaths, settings: Settings, rules_dir: Path, work: Path
               ) -> Iterator[AlertPath]:
    """Start Prometheus (rules), Alertmanager and serve beside the running lab; stop them."""
    for binary in (ALERTMANAGER, PROMETHEUS):
        if not Path(binary).exists():
            raise PermanentError(f"{binary} is missing: run `make deps`")
    rules = load_rules(rules_dir, settings.ansible.project_dir / "roles")
    data, _ = alerting_rules(rules.faults)
    (work / "alerts.yml").write_text(yaml.safe_dump(data))
    token = secrets.token_urlsafe(24)
    (work / "token").write_text(token)
    os.chmod(work / "token", 0o600)
    serve_port, am_port, prom_port = _port(), _port(), _port()
    (work / "alertmanager.yml").write_text(
        yaml.safe_dump(alertmanager_config(serve_port, work / "token", group_wait="0s")))
    scrape = yaml.safe_load(paths.prometheus_config.read_text())
    (work / "prometheus.yml").write_text(yaml.safe_dump({
        **scrape, "rule_files": [str(work / "alerts.yml")],
        "alerting": {"alertmanagers": [{"static_configs": [
            {"targets": [f"127.0.0.1:{am_port}"]}]}]}}))
    config = settings.model_dump(mode="json", exclude={"source_file"})
    config.update(state={"dir": str(work / "state")}, rules={"dir": str(rules_dir)},
                  serve={"listen": f"127.0.0.1:{serve_port}", "sweep_every_s": 600,
                         "token_file": str(work / "token"), "batch_window_s": 0},
                  rca={**config.get("rca", {}), "in_sweep": False})
    (work / "selfheal.yml").write_text(yaml.safe_dump(config))
    procs: list[subprocess.Popen[bytes]] = []

    def spawn(argv: list[str], log: str) -> subprocess.Popen[bytes]:
        env = {k: v for k, v in os.environ.items() if k != "SELFHEAL_CONFIG"}
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, env=env,
                                stderr=(work / log).open("wb"))
        procs.append(proc)
        return proc

    try:
        am = spawn([ALERTMANAGER, f"--config.file={work / 'alertmanager.yml'}",
                    f"--storage.path={work / 'am-data'}", "--cluster.listen-address=",
                    f"--web.listen-address=127.0.0.1:{am_port}"], "alertmanager.log")
        prom = spawn([PROMETHEUS, f"--config.file={work / 'prometheus.yml'}",
                      f"--storage.tsdb.path={work / 'prom-data'}",
                      f"--web.listen-address=127.0.0.1:{prom_port}"], "prometheus.log")
        serve = spawn([sys.executable, "-m", "orchestrator", "--config",
                       str(work / "selfheal.yml"), "serve"], "serve.log")
        _wait(f"http://127.0.0.1:{am_port}/-/ready", 60, am, work / "alertmanager.log")
        _wait(f"http://127.0.0.1:{prom_port}/-/ready", 60, prom, work / "prometheus.log")
        _wait(f"http://127.0.0.1:{serve_port}/healthz", 120, serve, work / "serve.log")
        path = AlertPath(f"http://127.0.0.1:{serve_port}", work / "state")
        _first_sweep(path, 120, serve, work / "serve.log")
        yield path
    finally:
        for proc in reversed(procs):  # serve first: it finishes the sweep in hand
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                proc.kill()
