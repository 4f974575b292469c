"""prometheus-process-exporter on every lab host: per-process CPU and memory, per host.

Called by ``image`` (package and config file in the image), ``hostconfig`` (the per-host
listen address), ``prometheus`` (the ``process`` scrape job) and ``fleet`` (health check).
Inside a lab host /proc/meminfo and the CPU counters are the whole machine's, so per-host CPU
and memory faults are seen here, per process group, from each process's own /proc/PID/stat.

Grouping: by program, not by unit. Interpreters are named after the script they run (the demo
app is ``selfheal_demo.py``, not one ``python3`` group shared with every Ansible module run),
everything else after its ``comm``. Grouping by unit was tried: process-exporter 0.7.10's
``{{.Cgroups}}`` renders the raw list of every hierarchy's cgroup path (``[/system.slice/x.service
/ / / ...]``) and its templates have no function to cut a unit name out of it, so a unit label
would need metric relabelling of that raw string in every Prometheus that scrapes it. The
``runaway_process`` role reads the unit of the process it picked from /proc/PID/cgroup itself.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from orchestrator.lab.paths import FILES_DIR
from orchestrator.lab.probe import http_ok

PACKAGES = ("prometheus-process-exporter",)
UNIT = "prometheus-process-exporter.service"
CONFIG_PATH = "etc/prometheus/process-exporter.yml"
DEFAULTS_PATH = "/etc/default/prometheus-process-exporter"
JOB = "process"
PORT = 9256


def customise(root: Path) -> None:
    """Put the grouping config into the image (the package's unit is enabled by its postinst)."""
    config = root / CONFIG_PATH
    config.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(FILES_DIR / "process-exporter.yml", config)


def host_files(address: str) -> dict[str, tuple[str, str]]:
    """Per-host file name -> (text, where it is bound in the host)."""
    args = (
        f"-web.listen-address={address}:{PORT} -config.path=/{CONFIG_PATH} "
        # smaps and io need more than the exporter's own user may read; threads add cardinality
        "-gather-smaps=false -threads=false"
    )
    return {"prometheus-process-exporter": (f'ARGS="{args}"\n', DEFAULTS_PATH)}


def scrape_job(addresses: list[str]) -> dict[str, object]:
    """The Prometheus job scraping every host's exporter (instance = "<address>:9256")."""
    return {
        "job_name": JOB,
        "static_configs": [{"targets": [f"{a}:{PORT}" for a in addresses]}],
    }


def healthy(address: str) -> bool:
    return http_ok(f"http://{address}:{PORT}/metrics")
