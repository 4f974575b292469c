"""End to end on the lab: a PostgreSQL pool exhausted by sessions idle in transaction.

The db host's application ``shop`` holds sessions idle in transaction until PostgreSQL refuses
more (``selfheal lab inject db_pool_exhausted``); prometheus-postgres-exporter shows it, and
bounded sweeps heal it with ``db_terminate_idle``, which ends those sessions (never a
superuser's), after which the signal recovers on a fresh Prometheus sample and the other hosts
were not touched. The second test fills the pool with a superuser's sessions, which the role
must never end: it cannot fix that, its verification fails, nothing is ended and the incident is
escalated (an ended session cannot be revived, so there is no rollback to run).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator import lab
from orchestrator.config import Settings, load_settings
from orchestrator.drill import run_drill
from orchestrator.engine import Controller
from orchestrator.execute.inventory import load_inventory
from orchestrator.wiring import controller_for

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


def controller(tmp_path: Path) -> Controller:
    base = load_settings(lab.lab_paths().settings_file)
    data = base.model_dump(exclude={"source_file"})
    data["state"] = {"dir": tmp_path / "state"}
    return controller_for(Settings(**data))


def unit_started(host: str) -> str:
    return lab.ssh_run(host, ["systemctl", "show", "-p", "ExecMainStartTimestampMonotonic",
                              DEMO]).stdout


def test_exhausted_pool_is_freed_and_superusers_and_other_hosts_untouched(
        db_host: str, cleared: None, tmp_path: Path) -> None:
    ctl = controller(tmp_path)
    others = [h for h in ctl.inventory.hosts if h != db_host]
    before = {h: unit_started(h) for h in others}

    def exhaust(fault: str, host: str) -> float:
        at = lab.inject(fault, host).injected_at
        dba_holds(host, 1)  # in a superuser slot: the pool is full for everyone else
        return at

    result = run_drill(ctl, "db_pool_exhausted", db_host, exhaust, timeout_s=180)
    assert result.healed, result
    assert (result.fault, result.remediation) == ("db_pool_exhausted", "db_terminate_idle")
    assert sessions(db_host).get("postgres") == 1  # the superuser's session was never ended
    record = json.loads(lab.ssh_run(db_host, [
        "cat", "/var/lib/selfheal/snapshots/db_terminate_idle/latest.json"]).stdout)
    ended = record["pool"]["sessions"]
    # Only sessions idle past the catalog's 5 s are ended: the pool fills one session at a time,
    # so under load the last few may still be younger and stay; enough for min_free (3) go.
    assert {s["user"] for s in ended} == {"shop"} and len(ended) >= 3, ended
    assert all(float(s["idle_s"]) >= 5 for s in ended), ended
    assert {h: unit_started(h) for h in others} == before, "another host was touched"
    assert {run.host for run in ctl.store.history(0)} == {db_host}


def test_a_pool_held_by_a_superuser_is_not_freed_and_is_escalated(
        db_host: str, cleared: None, tmp_path: Path) -> None:
    ctl = controller(tmp_path)

    def superuser_fills(fault: str, host: str) -> float:
        at = time.time()
        # max_connections 20 - 3 superuser slots - the exporter's 2: 14 leaves one for the app
        dba_holds(host, 14)
        return at

    result = run_drill(ctl, "db_pool_exhausted", db_host, superuser_fills, timeout_s=180)
    assert result.state == "escalated", result
    incident = ctl.store.get(result.incident_id or 0)
    assert incident is not None
    messages = " ".join(incident.detail.get("messages", []))
    assert "connection(s) free for non-superusers, want 3" in messages, incident.detail
    assert sessions(db_host) == {"postgres": 14}  # none was ended
