#!/usr/bin/env python3
"""Alert storm against ``selfheal serve`` on loopback: errors, latency, memory, actions.

    benchmarks/serve_load.py [--alerts 10000] [--seconds 60] [--per-request 5] [--json]

Starts a real Prometheus scraping a small exporter that shows ``--hosts`` hosts (20 % of them
with a crashed service), and ``selfheal serve`` with the shipped policy over an inventory of
those hosts on addresses where no sshd listens (127.0.15.100+), so every play that the
guardrails let through really runs and ends unreachable, touching nothing. Then it posts
``--alerts`` alerts in ``--seconds`` seconds (Alertmanager-style groups of ``--per-request``,
half to /immediate and half to /batch, each alert sent 4 times as Alertmanager repeats groups,
alerts for healthy hosts too) and prints: HTTP status counts, latency percentiles, serve's peak
RSS, when serve's first sweep (the fleet's, which opens the crashed hosts' incidents) ended,
counted from the first request (negative: before it; waited for up to 120 s past the load),
sweeps (by trigger: the fleet's schedule or an alert's hosts), the load average at the end,
incidents by state, and the runs against the guardrail budget (distinct hosts run <=
blast_radius.max_hosts, runs at once <= max_concurrent).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import yaml
from prometheus_client import CollectorRegistry, Gauge, start_http_server
from sqlalchemy import create_engine, text

from orchestrator.config import PROJECT_ROOT

TOKEN = "load-benchmark-token"
NET = "127.0.15"  # this worktree's lab net; hosts 100+ have no sshd
SIGNALS = {
    "bench_node_up": {"promql": 'selfheal_bench_up{unit="node"}', "firing_when": "== 0"},
    "bench_service_up": {"promql": 'selfheal_bench_up{unit!="node"}', "firing_when": "== 0"},
}
FAULTS = {"service_crash": {"description": "benchmark", "when_firing": ["bench_service_up"],
                            "when_healthy": ["bench_node_up"],
                            "remediations": ["service_restart"]}}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer within {timeout}s")


def setup(work: Path, hosts: int) -> tuple[subprocess.Popen[bytes], str, Path]:
    """Exporter + Prometheus + rules + inventory + settings; returns Prometheus and config."""
    registry = CollectorRegistry()
    gauge = Gauge("selfheal_bench_up", "benchmark signal", ["instance", "unit"],
                  registry=registry)
    broken = {i for i in range(hosts) if i % 5 == 0}
    for i in range(hosts):
        gauge.labels(f"{NET}.{100 + i}:9100", "node").set(1)
        gauge.labels(f"{NET}.{100 + i}:8080", "selfheal-demo.service").set(
            0 if i in broken else 1)
    exporter = free_port()
    start_http_server(exporter, addr="127.0.0.1", registry=registry)
    prom_port = free_port()
    (work / "prometheus.yml").write_text(
        "global: {scrape_interval: 1s}\nscrape_configs:\n  - job_name: bench\n"
        f"    honor_labels: true\n    static_configs: [{{targets: ['127.0.0.1:{exporter}']}}]\n")
    prometheus = subprocess.Popen(
        ["/usr/bin/prometheus", f"--config.file={work / 'prometheus.yml'}",
         f"--storage.tsdb.path={work / 'tsdb'}", f"--web.listen-address=127.0.0.1:{prom_port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rules = work / "rules"
    rules.mkdir()
    for name in ("remediations.yml", "policy.yml"):
        (rules / name).write_text((PROJECT_ROOT / "rules" / name).read_text())
    signals = yaml.safe_load((PROJECT_ROOT / "rules" / "signals.yml").read_text())["signals"]
    (rules / "signals.yml").write_text(yaml.safe_dump({"signals": {**signals, **SIGNALS}}))
    (rules / "faults.yml").write_text(yaml.safe_dump({"faults": FAULTS}))
    (work / "hosts.ini").write_text("".join(
        f"b{i} ansible_host={NET}.{100 + i} ansible_port=22\n" for i in range(hosts)))
    config = work / "selfheal.yml"
    config.write_text(yaml.safe_dump({
        "prometheus": {"url": f"http://127.0.0.1:{prom_port}"},
        "inventory": {"path": "hosts.ini"}, "state": {"dir": "state"}, "rules": {"dir": "rules"},
        "ansible": {"timeout_s": 60}, "log": {"format": "json", "level": "WARNING"},
        "serve": {"listen": f"127.0.0.1:{free_port()}", "sweep_every_s": 2}}))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # until Prometheus has scraped the exporter
        try:
            got = httpx.get(f"http://127.0.0.1:{prom_port}/api/v1/query",
                            params={"query": "count(selfheal_bench_up)"}, timeout=2).json()
            if got["data"]["result"]:
                break
        except (httpx.HTTPError, KeyError, ValueError):
            pass
        time.sleep(0.3)
    return prometheus, yaml.safe_load(config.read_text())["serve"]["listen"], config


def bodies(alerts: int, per_request: int, hosts: int) -> list[dict[str, Any]]:
    """Alertmanager-style groups; each distinct alert appears 4 times (repeats)."""
    distinct = max(1, alerts // 4)
    start = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    stream = []
    for n in range(alerts):
        k = n % distinct
        host = k % hosts
        stream.append({"status": "firing", "fingerprint": f"{k:016x}", "startsAt": start,
                       "endsAt": "0001-01-01T00:00:00Z",
                       "labels": {"alertname": f"Bench{k % 7}", "fault": "service_crash",
                                  "instance": f"{NET}.{100 + host}:8080",
                                  "unit": "selfheal-demo.service"}})
    return [{"version": "4", "groupKey": f"g{i}", "status": "firing", "receiver": "selfheal",
             "alerts": stream[i:i + per_request]} for i in range(0, alerts, per_request)]


def rss_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def load(base: str, requests: list[dict[str, Any]], seconds: float, pid: int,
         linger_s: float) -> dict[str, Any]:
    codes: Counter[str] = Counter()
    latencies: list[float] = []
    lock = threading.Lock()
    rss_samples: list[int] = []
    first_sweep: list[float] = []  # when serve's first sweep (the fleet's) ended, from t0
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.5):
            rss_samples.append(rss_kb(pid, "VmRSS"))
            if not first_sweep:
                try:
                    age = httpx.get(f"{base}/healthz", timeout=5).json()[
                        "last_successful_sweep_age_s"]
                except (httpx.HTTPError, KeyError, ValueError):
                    continue
                if age is not None:
                    first_sweep.append(time.monotonic() - float(age) - t0)

    interval = seconds / max(1, len(requests))
    t0 = time.monotonic()
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    with httpx.Client(timeout=30, headers={"Authorization": f"Bearer {TOKEN}"}) as client:

        def send(i: int) -> None:
            delay = t0 + i * interval - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            path = "immediate" if i % 2 else "batch"
            began = time.monotonic()
            try:
                got = client.post(f"{base}/api/v1/alert/{path}", json=requests[i])
                code = str(got.status_code)
            except httpx.HTTPError as exc:
                code = type(exc).__name__
            with lock:
                codes[code] += 1
                latencies.append(time.monotonic() - began)

        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(send, range(len(requests))))
    elapsed = time.monotonic() - t0
    while not first_sweep and time.monotonic() - t0 < linger_s:  # the storm's first sweep
        time.sleep(0.5)
    done.set()
    sampler.join()
    latencies.sort()

    def pct(p: float) -> float:
        return round(latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000, 1)

    return {"elapsed_s": round(elapsed, 1), "codes": dict(codes),
            "latency_ms": {"p50": pct(0.5), "p95": pct(0.95), "p99": pct(0.99),
                           "max": round(latencies[-1] * 1000, 1),
                           "mean": round(statistics.mean(latencies) * 1000, 1)},
            "rss_mb_during": round(max(rss_samples, default=0) / 1024, 1),
            # None: serve's first sweep had not ended ``linger_s`` after the first request
            "first_sweep_end_s": round(first_sweep[0], 1) if first_sweep else None}


def store_figures(state: Path, policy: dict[str, Any]) -> dict[str, Any]:
    engine = create_engine(f"sqlite:///{state / 'selfheal.db'}")
    with engine.connect() as conn:
        runs = conn.execute(text("SELECT host, started_at, finished_at, status FROM runs "
                                 "WHERE phase = 'remediate' AND check_mode = 0")).all()
        states = dict(conn.execute(text("SELECT state, count(*) FROM incidents GROUP BY state"))
                      .all())
        alerts = conn.execute(text("SELECT count(*) FROM alerts")).scalar_one()
    events = sorted([(r.started_at, 1) for r in runs] + [(r.finished_at, -1) for r in runs])
    running = most = 0
    for _, step in events:
        running += step
        most = max(most, running)
    budget = {"max_hosts": policy["blast_radius"]["max_hosts"],
              "max_concurrent": policy["max_concurrent"]}
    hosts = len({r.host for r in runs})
    return {"alerts_kept": alerts, "incidents": states, "runs": len(runs),
            "run_outcomes": dict(Counter(r.status for r in runs)), "hosts_run": hosts,
            "most_runs_at_once": most, "budget": budget,
            "within_budget": hosts <= budget["max_hosts"] and most <= budget["max_concurrent"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--alerts", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--per-request", type=int, default=5)
    parser.add_argument("--hosts", type=int, default=100)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="selfheal-load-") as tmp:
        work = Path(tmp)
        prometheus, listen, config = setup(work, args.hosts)
        env = {**os.environ, "SELFHEAL_SERVE__TOKEN": TOKEN}
        env.pop("SELFHEAL_CONFIG", None)
        serve = subprocess.Popen([sys.executable, "-m", "orchestrator", "--config", str(config),
                                  "serve"], env=env, stdout=subprocess.DEVNULL,
                                 stderr=(work / "serve.log").open("w"))
        base = f"http://{listen}"
        try:
            wait_http(f"{base}/healthz", 180)  # serve starts slowly on a loaded machine
            rss_idle = rss_kb(serve.pid, "VmRSS")
            requests = bodies(args.alerts, args.per_request, args.hosts)
            figures = load(base, requests, args.seconds, serve.pid, args.seconds + 120)
            time.sleep(3)  # the last batch window and its sweep
            metrics = httpx.get(f"{base}/metrics", timeout=10).text
            peak = rss_kb(serve.pid, "VmHWM")
        except Exception:  # serve died or hung: its log says why
            print((work / "serve.log").read_text()[-4000:], file=sys.stderr)
            raise
        finally:
            serve.send_signal(signal.SIGTERM)
            try:
                serve.wait(timeout=120)
            finally:
                prometheus.terminate()
                prometheus.wait(timeout=30)
        log = (work / "serve.log").read_text()
        policy = yaml.safe_load((work / "rules" / "policy.yml").read_text())
        result = {"alerts": args.alerts, "requests": len(requests), "seconds": args.seconds,
                  "hosts": args.hosts, **figures, "rss_mb_idle": round(rss_idle / 1024, 1),
                  "rss_mb_peak": round(peak / 1024, 1),
                  "errors": sum(n for c, n in figures["codes"].items() if c != "200"),
                  "serve_exit": serve.returncode, "tracebacks": log.count("Traceback"),
                  "sweep_duration_s": next((float(line.split()[1]) for line in
                                            metrics.splitlines() if line.startswith(
                                                "selfheal_sweep_duration_seconds ")), None),
                  "sweeps": {line.split('"')[1]: int(float(line.split()[-1]))
                             for line in metrics.splitlines()
                             if line.startswith("selfheal_sweeps_total{")},
                  "load_average_1m": round(os.getloadavg()[0], 1),
                  **store_figures(work / "state", policy)}
        if result["tracebacks"]:  # show the first one: a benchmark that hides errors lies
            first = log.index("Traceback")
            print(log[max(0, first - 600):first + 3000], file=sys.stderr)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for key, value in result.items():
            print(f"{key:>20}: {value}")
    ok = result["errors"] == 0 and result["within_budget"] and result["serve_exit"] == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
