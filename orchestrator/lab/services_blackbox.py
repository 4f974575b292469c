"""The blackbox exporter that probes every web host's HTTPS endpoint, and its scrape job.

Called by ``fleet`` (``start`` before Prometheus on ``up``, ``stop`` on ``down``),
``prometheus.write_config`` (``scrape_jobs``) and ``services_web.checks`` (``probe_ok``).
It runs on the controller, beside Prometheus, as a production site runs it: a prober sees each
certificate as clients do (over the network, at the host's address), one process covers the
whole fleet instead of one more daemon per web host, and a web host that is down shows up as a
failed probe rather than as a missing exporter. It listens on ``<lab net>.254:9115``, inside the
lab's own /24, so two labs side by side never share it. The module skips certificate
verification so that an expired certificate still reports ``probe_ssl_earliest_cert_expiry``.
"""

from __future__ import annotations

import shutil
import urllib.parse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from orchestrator.errors import PermanentError
from orchestrator.lab import procs
from orchestrator.lab.layout import WEB, runs
from orchestrator.lab.paths import ADDRESS_PREFIX, LabPaths
from orchestrator.lab.probe import http_get

BINARY = "/usr/bin/prometheus-blackbox-exporter"
LISTEN = f"{ADDRESS_PREFIX}254:9115"
MODULE = "https_cert"
JOB = "tls"
HTTPS_PORT = 443
CONFIG = {
    "modules": {
        MODULE: {
            "prober": "http",
            "timeout": "2s",
            "http": {
                "preferred_ip_protocol": "ip4",
                "fail_if_not_ssl": True,
                "tls_config": {"insecure_skip_verify": True},
            },
        },
    },
}


def config_file(paths: LabPaths) -> Path:
    return paths.lab_dir / "blackbox" / "blackbox.yml"


def marker(paths: LabPaths) -> str:
    """The string in the command line that marks the lab's own blackbox exporter."""
    return f"--config.file={config_file(paths)}"


def scrape_jobs(addresses: Mapping[str, str]) -> list[dict[str, Any]]:
    """The ``tls`` job: one probe of ``https://<address>:443`` per web host, each series with
    ``instance="<address>:443"`` (so selfheal maps it to the host) and the URL in ``target``."""
    web = [f"{a}:{HTTPS_PORT}" for n, a in addresses.items() if runs(n, WEB)]
    if not web:
        return []
    return [{
        "job_name": JOB,
        "metrics_path": "/probe",
        "params": {"module": [MODULE]},
        "static_configs": [{"targets": web}],
        "relabel_configs": [
            {"source_labels": ["__address__"], "target_label": "__param_target",
             "replacement": "https://$1"},
            {"source_labels": ["__param_target"], "target_label": "target"},
            {"source_labels": ["__address__"], "target_label": "instance"},
            {"target_label": "__address__", "replacement": LISTEN},
        ],
    }]


def start(paths: LabPaths) -> int:
    """Write the config and start the exporter, unless the lab's one runs already; its PID."""
    running = procs.find(marker(paths))
    if running:
        return running[0]
    if shutil.which(BINARY) is None:
        raise PermanentError(
            f"{BINARY} is missing: apt-get install -y prometheus-blackbox-exporter")
    config_file(paths).parent.mkdir(parents=True, exist_ok=True)
    config_file(paths).write_text(yaml.safe_dump(CONFIG, sort_keys=False), encoding="utf-8")
    argv = [BINARY, marker(paths), f"--web.listen-address={LISTEN}"]
    return procs.spawn(argv, config_file(paths).with_name("blackbox.log"))


def stop(paths: LabPaths) -> None:
    """End every blackbox exporter started with the lab's config."""
    procs.terminate(procs.find(marker(paths)), marker(paths), timeout=10.0)


def probe_ok(address: str, timeout: float = 3.0) -> bool:
    """True when the exporter probes ``https://<address>:443`` and reads its certificate."""
    query = urllib.parse.urlencode({"module": MODULE,
                                    "target": f"https://{address}:{HTTPS_PORT}"})
    try:
        body = http_get(f"http://{LISTEN}/probe?{query}", timeout).decode()
    except (OSError, ValueError):
        return False
    return any(line.startswith("probe_ssl_earliest_cert_expiry ") for line in body.splitlines())
