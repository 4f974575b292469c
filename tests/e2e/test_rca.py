"""End to end on the lab: the root-cause report of a real crash, through the read-only role.

A crash of the demo service on one lab host; ``selfheal diagnose HOST --json --no-llm`` must
report it from the rules with the host's real facts (the unit's journal says it was killed by
SIGKILL), its metric timeline and an ``llm: off`` that says so; the other hosts are untouched
(the role only reads). The host is restarted afterwards. A full disk and an exhausted database
pool are explained with their own evidence (what fills the mount point, who holds the pool).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from orchestrator import lab
from orchestrator.config import load_settings
from orchestrator.drill import run_drill
from orchestrator.lab import layout
from orchestrator.wiring import controller_for

pytestmark = pytest.mark.e2e
UNIT = "selfheal-demo.service"


def started(host: str) -> str:
    out = lab.ssh_run(host, ["systemctl", "show", "-p", "ExecMainStartTimestampMonotonic", UNIT])
    return out.stdout.strip()


def diagnose_json(host: str, *extra: str) -> tuple[int, dict[str, object]]:
    settings_file = lab.lab_paths().settings_file
    done = subprocess.run(
        [str(Path(sys.executable).parent / "selfheal"), "--config", str(settings_file),
         "diagnose", host, "--json", *extra], capture_output=True, text=True, timeout=300,
        check=False)
    assert done.stdout.strip(), done.stderr[-2000:]
    return done.returncode, json.loads(done.stdout)


def test_a_real_crash_is_explained_by_the_rules_with_the_hosts_facts(lab_fleet: None) -> None:
    controller = controller_for(load_settings(lab.lab_paths().settings_file))
    hosts = sorted(controller.inventory.hosts)
    host, others = hosts[1], [h for h in hosts if h != hosts[1]]
    before = {h: started(h) for h in others}
    lab.inject("service_crash", host)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            verdict = next(v for v in controller.look()[0] if v.host == host)
            if verdict.diagnoses:
                break
            time.sleep(0.5)
        code, out = diagnose_json(host, "--no-llm")
    finally:
        lab.ssh_run(host, ["systemctl", "restart", UNIT])
    assert code == 1  # a fault: a human (or the sweep) acts
    report = out["rca"][0]  # type: ignore[index]
    assert report["fault"] == "service_crash" and report["remediation"] == "service_restart"
    assert report["params"]["service_restart_unit"] == UNIT and report["risk_tier"] == 1
    assert out["llm"]["status"] == "off"  # type: ignore[index]
    assert out["llm"]["reason"].endswith("rules alone")  # type: ignore[index]
    facts = out["context"]["facts"]  # type: ignore[index]
    assert facts["status"] == "ok", facts["reason"]
    assert any("killed by signal 9/KILL" in h for h in facts["hints"]), facts["hints"]
    assert any("code=killed" in line for line in facts["unit_journal"])
    assert facts["memory"]["total_mb"] > 0 and facts["disks"] and facts["top_cpu"]
    assert any(s["signal"] == "service_up" for s in out["context"]["timeline"])  # type: ignore[index]
    assert "killed by signal 9/KILL" in report["root_cause"]
    assert {h: started(h) for h in others} == before  # read-only: nothing restarted elsewhere


def test_a_healthy_host_reports_no_fault(lab_fleet: None) -> None:
    controller = controller_for(load_settings(lab.lab_paths().settings_file))
    host = sorted(controller.inventory.hosts)[-1]
    code, out = diagnose_json(host)
    report = out["rca"][0]  # type: ignore[index]
    assert code == 0 and report["fault"] is None and report["remediation"] is None
    # the mixed lab's last host runs no database and no web server: those signals do not
    # concern it (neither shown nor unknown), and what it does export is healthy
    assert out["health"] == "healthy", out["notes"]
    signals = dict(out["signals"])  # type: ignore[call-overload]
    assert signals and set(signals.values()) == {"healthy"}, signals
    assert not {"db_pool_used", "tls_cert_expiry"} & set(signals), signals
    assert out["llm"]["status"] == "off"  # type: ignore[index]
    assert "no model configured" in out["llm"]["reason"]  # type: ignore[index]


def test_the_sweep_heals_first_then_keeps_the_analysis(lab_fleet: None, tmp_path: Path) -> None:
    """A crash healed by the loop; the incident then holds the rules' report and the context
    (the analysis ran after the fix: the incident was resolved before it was explained)."""
    base = load_settings(lab.lab_paths().settings_file)
    settings = base.model_copy(update={"state": base.state.model_copy(
        update={"dir": tmp_path / "state"})})
    controller = controller_for(settings)
    hosts = sorted(controller.inventory.hosts)
    host = hosts[0]
    before = {h: started(h) for h in hosts if h != host}
    try:
        result = run_drill(controller, "service_crash", host, lambda f, h: lab.inject(f, h)
                           .injected_at, timeout_s=150)
    finally:
        lab.clear("service_crash", host)  # a failed heal must not leave the next test a crash
    incident = next(i for i in controller.store.incidents() if i.host == host)
    assert result.resolved_at is not None and incident.state.value == "resolved"
    rca = incident.detail["rca"]
    assert rca["fault"] == "service_crash" and rca["llm"]["status"] == "off"
    assert incident.detail["rca_context"]["facts"]["status"] == "ok"
    actions = [r.action for r in controller.store.audit_records()
               if r.payload.get("incident") == incident.id]
    assert actions.index("incident.resolved") < actions.index("incident.explained")
    assert {h: started(h) for h in before} == before


@pytest.mark.parametrize(("fault", "group", "expected"), [
    ("disk_full", None, {"fault": "disk_full", "remediation": "disk_cleanup",
                         "subject": "mountpoint=/srv", "hint": "what fills it: /srv/"}),
    ("db_pool_exhausted", "db", {"fault": "db_pool_exhausted",
                                 "remediation": "db_terminate_idle", "subject": "",
                                 "hint": "idle in transaction"}),
])
def test_a_new_fault_is_explained_with_its_own_evidence(
        lab_fleet: None, fault: str, group: str | None, expected: dict[str, str]) -> None:
    """The report of a full disk names its mount point and what fills it (du through the
    read-only role); an exhausted pool names who holds the sessions (a read-only query)."""
    controller = controller_for(load_settings(lab.lab_paths().settings_file))
    hosts = [h for h in sorted(controller.inventory.hosts)
             if group is None or layout.runs(h, group)]
    host = hosts[-1]
    lab.inject(fault, host)
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            verdict = next(v for v in controller.look()[0] if v.host == host)
            if any(d.fault == expected["fault"] for d in verdict.diagnoses):
                break
            time.sleep(1)
        code, out = diagnose_json(host, "--no-llm")
    finally:
        lab.clear(fault, host)
    report = out["rca"][0]  # type: ignore[index]
    assert code == 1 and report["fault"] == expected["fault"], report
    assert report["remediation"] == expected["remediation"]
    assert report["subject"] == expected["subject"]
    if expected["subject"]:
        assert f"({expected['subject']})" in report["summary"]
    facts = out["context"]["facts"]  # type: ignore[index]
    assert facts["status"] == "ok", facts["reason"]
    assert any(expected["hint"] in h for h in facts["hints"]), facts["hints"]
    assert expected["hint"] in report["root_cause"]
    assert "What the metrics show" in report["root_cause"]
