"""The controller-side Prometheus that watches the lab: its config, start, readiness and checks.

Called by ``fleet`` (``up`` starts it after the hosts, ``status`` and ``down`` check and stop it)
and by tests that query it (``query``). It runs the machine's own ``/usr/bin/prometheus`` on
127.0.0.1:19090 with a 1 s scrape and evaluation interval, data under ``<lab>/prometheus``.
Jobs: ``node`` (node_exporter on every host), ``demo`` (the demo app, with the static label
``unit: selfheal-demo.service``), ``process`` (process-exporter on every host), ``postgres`` (the
exporter on db hosts) and ``tls`` (web hosts' certificates through the blackbox exporter,
``services_blackbox``).
"""

from __future__ import annotations

import json
import logging
import shutil
import signal
import urllib.parse
from collections.abc import Mapping
from typing import Any

import yaml

from orchestrator.errors import PermanentError, SourceUnavailable
from orchestrator.lab import procs, services_blackbox, services_postgres, services_process
from orchestrator.lab.layout import APP, runs
from orchestrator.lab.paths import (
    DEMO_PORT,
    DEMO_UNIT,
    NODE_EXPORTER_PORT,
    PROMETHEUS_LISTEN,
    LabPaths,
)
from orchestrator.lab.probe import http_get, http_ok

log = logging.getLogger(__name__)

URL = f"http://{PROMETHEUS_LISTEN}"
BINARY = "/usr/bin/prometheus"


def marker(paths: LabPaths) -> str:
    """The string in the command line that marks the lab's own Prometheus."""
    return f"--config.file={paths.prometheus_config}"


def write_config(paths: LabPaths, addresses: Mapping[str, str]) -> None:
    """Write prometheus.yml: node_exporter on every host (name -> address), the demo app where
    the host runs it (``layout``)."""
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "1s"},
        "scrape_configs": [
            {
                "job_name": "node",
                "static_configs": [
                    {"targets": [f"{a}:{NODE_EXPORTER_PORT}" for a in addresses.values()]},
                ],
            },
            {
                "job_name": "demo",
                "static_configs": [
                    {
                        "targets": [f"{a}:{DEMO_PORT}" for n, a in addresses.items()
                                    if runs(n, APP)],
                        "labels": {"unit": DEMO_UNIT},
                    },
                ],
            },
            services_postgres.scrape_job(addresses),
            *services_blackbox.scrape_jobs(addresses),
            services_process.scrape_job(list(addresses.values())),
        ],
    }
    paths.prometheus_dir.mkdir(parents=True, exist_ok=True)
    paths.prometheus_config.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")


def start(paths: LabPaths) -> int:
    """Start Prometheus in the background, unless the lab's one runs already; its PID."""
    running = procs.find(marker(paths))
    if running:
        procs.send_signal(running[0], signal.SIGHUP)  # re-read the config: hosts may have grown
        return running[0]
    if shutil.which(BINARY) is None:
        raise PermanentError(f"{BINARY} is missing: apt-get install -y prometheus")
    argv = [
        BINARY,
        marker(paths),
        f"--storage.tsdb.path={paths.prometheus_data}",
        f"--web.listen-address={PROMETHEUS_LISTEN}",
        "--storage.tsdb.retention.time=1d",
    ]
    return procs.spawn(argv, paths.prometheus_log)


def ready() -> bool:
    return http_ok(f"{URL}/-/ready")


def query(promql: str, timeout: float = 3.0) -> list[dict[str, Any]]:
    """The result vector of an instant query; SourceUnavailable when Prometheus fails."""
    url = f"{URL}/api/v1/query?{urllib.parse.urlencode({'query': promql})}"
    try:
        body = json.loads(http_get(url, timeout))
    except (OSError, ValueError) as exc:
        raise SourceUnavailable(f"lab Prometheus at {URL} did not answer: {exc}") from exc
    if body.get("status") != "success":
        raise SourceUnavailable(f"lab Prometheus query {promql!r} failed: {body}")
    return list(body["data"]["result"])


def targets(paths: LabPaths) -> set[str]:
    """Every ``job/address`` target the written prometheus.yml scrapes."""
    config = yaml.safe_load(paths.prometheus_config.read_text(encoding="utf-8"))
    return {
        f"{job['job_name']}/{target}"
        for job in config["scrape_configs"]
        for group in job.get("static_configs", ())
        for target in group["targets"]
    }


def unscraped(paths: LabPaths) -> list[str]:
    """The targets of ``targets`` with no ``up`` sample yet (all of them if unreachable)."""
    wanted = targets(paths)
    try:
        seen = {f"{s['metric']['job']}/{s['metric']['instance']}" for s in query("up")}
    except SourceUnavailable:
        return sorted(wanted)
    return sorted(wanted - seen)


def stop(paths: LabPaths, pid: int | None) -> None:
    """End the lab's Prometheus: the recorded PID and any other one using the lab's config."""
    pids = {*procs.find(marker(paths)), *([pid] if pid else [])}
    procs.terminate(pids, marker(paths), timeout=10.0)
