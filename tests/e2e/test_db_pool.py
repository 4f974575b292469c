"""End to end on the lab: a PostgreSQL pool exhausted by sessions idle in transaction.

The db host's application ``shop`` holds sessions idle in transaction until PostgreSQL refuses
more (``selfheal lab inject db_pool_exhausted``); prometheus-postgres-exporter shows it, and
``selfheal remediate HOST db_terminate_idle`` ends those sessions (never a superuser's), after
which the signal recovers in Prometheus and the other hosts were not touched. The second test
fills the pool with a superuser's sessions, which the role must never end: it cannot fix that,
so its verification fails and nothing is ended.

Until the signal grammar with ``applies_to`` lands, a sweep counts the hosts without PostgreSQL
as unknown ("too much broken"), so the heal is run by hand here, through the CLI.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator import lab
from orchestrator.config import load_settings
from orchestrator.execute.inventory import load_inventory
from orchestrator.models import Health
from orchestrator.rules import load_rules
from orchestrator.sources.prometheus import PrometheusSource, connect

pytestmark = pytest.mark.e2e
FILL = "/usr/local/bin/selfheal_lab_fill.py"
DBA_UNIT = "selfheal-e2e-dba.service"
DEMO = "selfheal-demo.service"


@pytest.fixture(scope="module")
def db_host(lab_fleet: None) -> str:
    hosts = load_inventory(lab.lab_paths().inventory)
    return sorted(h for h in hosts.hosts if "db" in hosts.hosts[h].groups)[0]


@pytest.fixture
def cleared(db_host: str) -> Iterator[None]:
    yield
    lab.clear("db_pool_exhausted", db_host)
    lab.ssh_run(db_host, ["systemctl", "stop", DBA_UNIT])
    lab.ssh_run(db_host, ["rm", "-rf", "/var/lib/selfheal/snapshots/db_terminate_idle"])


def psql(host: str, sql: str) -> str:
    result = lab.ssh_run(host, ["runuser", "-u", "postgres", "--", "psql", "-XAt", "-c", sql])
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def sessions(host: str) -> dict[str, int]:
    """Client sessions idle in transaction, by user."""
    rows = psql(host, "SELECT usename, count(*) FROM pg_stat_activity WHERE state = "
                      "'idle in transaction' GROUP BY 1")
    return {user: int(n) for user, n in (line.split("|") for line in rows.splitlines())}


def dba_holds(host: str, count: int) -> None:
    """A superuser (a DBA's migration, say) holds ``count`` sessions idle in transaction."""
    result = lab.ssh_run(host, ["systemd-run", f"--unit={DBA_UNIT}", "--collect", "--quiet",
                                "--property=Type=notify", "--uid=postgres", FILL, "db-pool",
                                "postgres", "--sessions", str(count)], timeout=60)
    assert result.returncode == 0, result.stderr


def signal_health(host: str, signal: str) -> Health:
    """The signal's health on ``host`` now, as the controller's own Prometheus source sees it."""
    settings = load_settings(lab.lab_paths().settings_file)
    rules_signal = load_rules(settings.rules.dir,
                              settings.ansible.project_dir / "roles").faults.signals[signal]
    address = load_inventory(settings.inventory.path).hosts[host].prometheus_host
    source = PrometheusSource(connect(settings.prometheus), settings.prometheus)
    findings = source.observe([rules_signal], {address: host}, time.time()).findings
    states = {f.health for f in findings if f.host == host}
    return states.pop() if len(states) == 1 else Health.UNKNOWN


def wait_for(host: str, signal: str, health: Health, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if signal_health(host, signal) is health:
            return
        time.sleep(0.5)
    raise AssertionError(f"{signal} on {host} never became {health.value}")


def remediate(host: str, tmp_path: Path) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-m", "orchestrator", "--config", str(lab.lab_paths().settings_file),
         "remediate", host, "db_terminate_idle", "--json"],
        capture_output=True, text=True, timeout=300, check=False,
        env={**os.environ, "SELFHEAL_STATE__DIR": str(tmp_path / "state")})
    assert done.stdout, done.stderr
    report: dict[str, object] = json.loads(done.stdout)
    return report


def unit_started(host: str) -> str:
    return lab.ssh_run(host, ["systemctl", "show", "-p", "ExecMainStartTimestampMonotonic",
                              DEMO]).stdout


def test_exhausted_pool_is_freed_and_superusers_and_other_hosts_untouched(
        db_host: str, cleared: None, tmp_path: Path) -> None:
    others = [h for h in load_inventory(lab.lab_paths().inventory).hosts if h != db_host]
    before = {h: unit_started(h) for h in others}
    lab.inject("db_pool_exhausted", db_host)
    dba_holds(db_host, 1)  # in a superuser slot: the pool was full for everyone else
    held = sessions(db_host)
    assert held["shop"] >= 10 and held["postgres"] == 1, held
    wait_for(db_host, "db_pool_used", Health.FIRING)
    report = remediate(db_host, tmp_path)
    outcome = report["outcome"]
    assert isinstance(outcome, dict) and outcome["status"] == "succeeded", report
    assert outcome["changed_hosts"] == [db_host]
    wait_for(db_host, "db_pool_used", Health.HEALTHY)
    assert sessions(db_host) == {"postgres": 1}  # the superuser's session was never ended
    record = json.loads(lab.ssh_run(db_host, [
        "cat", "/var/lib/selfheal/snapshots/db_terminate_idle/latest.json"]).stdout)
    assert {s["user"] for s in record["pool"]["sessions"]} == {"shop"}
    assert len(record["pool"]["sessions"]) == held["shop"]
    assert {h: unit_started(h) for h in others} == before, "another host was touched"


def test_a_pool_held_by_a_superuser_is_not_freed_and_the_fix_says_so(
        db_host: str, cleared: None, tmp_path: Path) -> None:
    # max_connections 20 - 3 superuser slots - the exporter's 2: 14 leaves one for the app
    dba_holds(db_host, 14)
    wait_for(db_host, "db_pool_used", Health.FIRING)
    report = remediate(db_host, tmp_path)
    outcome = report["outcome"]
    assert isinstance(outcome, dict) and outcome["status"] == "failed", report
    assert any("connection(s) free for non-superusers, want 3" in m
               for m in outcome["messages"]), outcome  # type: ignore[union-attr]
    assert sessions(db_host) == {"postgres": 14}
