"""A real Prometheus (the Debian binary) scraping a real prometheus_client exporter, on loopback.

The exporter uses ``honor_labels`` so a test can publish any ``instance`` label it likes,
including hostile ones.
"""

from __future__ import annotations

import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Gauge, start_http_server

PROMETHEUS = "/usr/bin/prometheus"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Exporter:
    port: int
    gauge: Gauge


@dataclass
class RealPrometheus:
    url: str
    process: subprocess.Popen[bytes]

    def wait_for(self, promql: str, timeout: float = 20.0) -> None:
        """Until ``promql`` returns at least one series."""
        import json
        from urllib.parse import quote

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.url}/api/v1/query?query={quote(promql)}",
                                            timeout=2) as resp:
                    if json.load(resp)["data"]["result"]:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"{promql} returned nothing within {timeout}s")


@pytest.fixture(scope="session")
def exporter() -> Exporter:
    registry = CollectorRegistry()
    gauge = Gauge("selfheal_test_service_up", "test signal", ["instance", "unit"],
                  registry=registry)
    port = free_port()
    start_http_server(port, addr="127.0.0.1", registry=registry)
    return Exporter(port, gauge)


@contextmanager
def running_prometheus(work: Path, config: str, ready: str = "up") -> Iterator[RealPrometheus]:
    """Prometheus with ``config`` (its TSDB in ``work/data``, which may hold backfilled
    blocks), on a free loopback port, until ``ready`` returns a series; stopped on exit."""
    if not Path(PROMETHEUS).exists():
        pytest.fail(f"{PROMETHEUS} missing: run `make deps` (Debian package prometheus)")
    (work / "prometheus.yml").write_text(config)
    port = free_port()
    proc = subprocess.Popen(
        [PROMETHEUS, f"--config.file={work / 'prometheus.yml'}",
         f"--storage.tsdb.path={work / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=(work / "prometheus.log").open("wb"))
    prom = RealPrometheus(f"http://127.0.0.1:{port}", proc)
    try:
        prom.wait_for(ready)
        yield prom
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(scope="session")
def prometheus(exporter: Exporter, tmp_path_factory: pytest.TempPathFactory
               ) -> Iterator[RealPrometheus]:
    with running_prometheus(tmp_path_factory.mktemp("prometheus"), f"""
global: {{scrape_interval: 1s, evaluation_interval: 1s}}
scrape_configs:
  - job_name: exporter
    honor_labels: true
    static_configs: [{{targets: ["127.0.0.1:{exporter.port}"]}}]
""") as prom:
        yield prom
