"""deploy/grafana/selfheal.json is built only on metrics selfheal exports, and every panel's
PromQL runs: a real Prometheus scrapes a real `selfheal serve` and answers each expression."""

from __future__ import annotations

import json
import re
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator.config import PROJECT_ROOT
from tests.integration.conftest import PROMETHEUS, Exporter, RealPrometheus, free_port
from tests.integration.test_serve import running_serve

pytestmark = pytest.mark.integration
DASHBOARD = PROJECT_ROOT / "deploy" / "grafana" / "selfheal.json"
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__range": "1h", "$job": "selfheal"}
METRIC = re.compile(r"\b((?:selfheal|process)_[a-z_]+)\b")
SUFFIX = re.compile(r"_(bucket|sum|count|total|created)$")


def expressions() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text())
    found = [(p["title"], t["expr"]) for p in dashboard["panels"] for t in p["targets"]]
    found += [("variable " + v["name"], v["query"].removeprefix("label_values(").split(",")[0])
              for v in dashboard["templating"]["list"]]
    assert found
    return found


def family(name: str) -> str:
    return SUFFIX.sub("", name)


def query(url: str, promql: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{url}/api/v1/query?"
                                f"{urllib.parse.urlencode({'query': promql})}",
                                timeout=10) as resp:
        return dict(json.load(resp))


def test_every_panel_runs_on_metrics_selfheal_exports(
        tmp_path: Path, exporter: Exporter, prometheus: RealPrometheus) -> None:
    with running_serve(tmp_path, prometheus.url, exporter, prometheus) as serve:
        exported = {family(line.split()[2]) for line in serve.metrics().splitlines()
                    if line.startswith("# TYPE ")}
        port = free_port()
        target = serve.url.removeprefix("http://")
        (tmp_path / "scrape.yml").write_text(yaml.safe_dump({
            "global": {"scrape_interval": "1s"},
            "scrape_configs": [{"job_name": "selfheal",
                                "static_configs": [{"targets": [target]}]}]}))
        proc = subprocess.Popen([PROMETHEUS, f"--config.file={tmp_path / 'scrape.yml'}",
                                 f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                                 f"--web.listen-address=127.0.0.1:{port}"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        scraper = RealPrometheus(f"http://127.0.0.1:{port}", proc)
        try:
            scraper.wait_for("selfheal_last_sweep_timestamp_seconds", timeout=60)
            problems = []
            for title, expr in expressions():
                for name in METRIC.findall(expr):
                    if family(name) not in exported:
                        problems.append(f"{title}: {name} is not exported by selfheal")
                for variable, value in GRAFANA_VARIABLES.items():
                    expr = expr.replace(variable, value)
                try:
                    answer = query(scraper.url, expr)
                except urllib.error.HTTPError as exc:
                    answer = {"status": "error", "error": exc.read().decode()[:300]}
                if answer.get("status") != "success":
                    problems.append(f"{title}: {expr!r} failed: {answer.get('error')}")
            assert problems == []
            # the check bites: a misspelt metric and a broken expression are reported
            assert family("selfheal_incidents_ended_totl") not in exported
            assert query(scraper.url, "selfheal_self_healing_success_ratio")["status"] == \
                "success"
        finally:
            proc.terminate()
            proc.wait(timeout=20)
