"""End to end on the lab: real hosts, real sshd and systemd, real Prometheus, real Ansible.

Each test crashes the demo service on a lab host and lets selfheal heal it (or, for the unsafe
cases, checks that it refuses). The lab is booted once per session by ``tests/e2e/conftest.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from orchestrator import lab
from orchestrator.config import Settings, load_settings
from orchestrator.drill import run_drill
from orchestrator.engine import Controller
from orchestrator.lab.paths import host_address
from orchestrator.models import IncidentState
from orchestrator.wiring import controller_for

pytestmark = pytest.mark.e2e
UNIT = "selfheal-demo.service"


def started_at(host: str) -> str:
    """When systemd last started the demo unit on ``host`` (changes on every restart)."""
    out = lab.ssh_run(host, ["systemctl", "show", "-p", "ExecMainStartTimestampMonotonic", UNIT])
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def unit_state(host: str) -> str:
    return lab.ssh_run(host, ["systemctl", "is-active", UNIT]).stdout.strip()


def settings_with_state(tmp_path: Path, **inventory: str) -> Settings:
    base = load_settings(lab.lab_paths().settings_file)
    data = base.model_dump(exclude={"source_file"})
    data["state"] = {"dir": tmp_path / "state"}
    for key, value in inventory.items():
        data["inventory"][key] = value
    return Settings(**data)


def inject(fault: str, host: str) -> float:
    return lab.inject(fault, host).injected_at


def wait_prometheus_sees_crash(controller: Controller, host: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        verdicts, _, _ = controller.look()
        if any(v.host == host and v.diagnoses for v in verdicts):
            return
        time.sleep(0.2)
    raise AssertionError(f"Prometheus never showed the crash on {host}")


def heal_by_hand(host: str) -> None:
    lab.ssh_run(host, ["systemctl", "restart", UNIT])


def test_crashed_service_is_healed_and_nothing_else_touched(
    lab_fleet: None, tmp_path: Path
) -> None:
    controller = controller_for(settings_with_state(tmp_path))
    others = [h for h in controller.inventory.hosts if h != "vps2"]
    before = {h: started_at(h) for h in others}
    result = run_drill(controller, "service_crash", "vps2", inject, timeout_s=60)
    assert result.healed, result
    assert result.remediation == "service_restart"
    assert result.injected_at < result.detected_at <= result.remediation_started_at  # type: ignore[operator]
    assert result.remediation_finished_at <= result.resolved_at  # type: ignore[operator]
    assert unit_state("vps2") == "active"
    health = f"http://{host_address(2)}:8080/healthz"
    assert lab.ssh_run("vps2", ["curl", "-sf", health]).returncode == 0
    assert {h: started_at(h) for h in others} == before, "another host's service was restarted"
    assert {run.host for run in controller.store.history(0)} == {"vps2"}
    transitions = [t["to"] for t in controller.store.transitions(result.incident_id or 0)]
    assert transitions == [
        "detected",
        "diagnosed",
        "planned",
        "remediating",
        "verifying",
        "resolved",
    ]
    assert controller.store.verify_audit() >= 7


def run_cli(*args: str, config: Path, state: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SELFHEAL_STATE__DIR": str(state)}
    return subprocess.run(
        [sys.executable, "-m", "orchestrator", "--config", str(config), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def test_cli_sweep_heals_and_audit_verifies(lab_fleet: None, tmp_path: Path) -> None:
    config = lab.lab_paths().settings_file
    state = tmp_path / "state"
    controller = controller_for(settings_with_state(tmp_path))
    inject("service_crash", "vps1")
    wait_prometheus_sees_crash(controller, "vps1")
    done = run_cli("sweep", "--json", config=config, state=state)
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    (action,) = report["actions"]
    assert (action["host"], action["state"]) == ("vps1", "resolved")
    # a mixed fleet: vps4 runs no demo app, so it exports no service signal and is healthy
    health = {h["host"]: h["health"] for h in report["hosts"]}
    assert health == {"vps1": "firing", "vps2": "healthy", "vps3": "healthy", "vps4": "healthy"}
    # no trained baseline in a fresh state dir: the learned detectors say they fell back
    assert report["anomalies"]["fallback"] is True
    assert "selfheal baseline train" in report["anomalies"]["model_status"]
    assert report["anomalies"]["unknown"] == []
    shown = run_cli(
        "incidents", "show", str(action["incident_id"]), "--json", config=config, state=state
    )
    assert json.loads(shown.stdout)["incident"]["state"] == "resolved"
    verified = run_cli("audit", "verify", "--json", config=config, state=state)
    assert verified.returncode == 0 and json.loads(verified.stdout)["ok"] is True
    again = run_cli("sweep", "--json", config=config, state=state)
    assert again.returncode == 0 and json.loads(again.stdout)["actions"] == []


def test_dry_run_changes_nothing(lab_fleet: None, tmp_path: Path) -> None:
    controller = controller_for(settings_with_state(tmp_path))
    inject("service_crash", "vps3")
    try:
        wait_prometheus_sees_crash(controller, "vps3")
        report = controller.sweep(dry_run=True)
        (action,) = report.actions
        assert (action.verdict, action.state) == ("dry_run", "would_remediate")
        assert report.exit_code == 1  # a fault is present and was not fixed
        seen = run_cli("diagnose", "vps3", "--json", config=lab.lab_paths().settings_file,
                       state=tmp_path / "state")
        assert seen.returncode == 1, seen.stderr
        diagnosis = json.loads(seen.stdout)
        signals = diagnosis["signals"]
        assert (signals["node_up"], signals["service_up"]) == ("healthy", "firing"), signals
        (plan,) = diagnosis["plans"]
        assert (plan["remediation"], plan["verdict"]) == ("service_restart", "run")
        assert plan["subject"] == f"unit={UNIT}"  # the one unit of a mixed host it would touch
        assert plan["params"]["service_restart_unit"] == UNIT
        time.sleep(1)
        assert unit_state("vps3") == "failed"
        assert controller.store.incidents() == []
    finally:
        heal_by_hand("vps3")


def test_unreachable_host_is_escalated_once(lab_fleet: None, tmp_path: Path) -> None:
    """SSH fails (wrong port in the inventory): one escalation, no retry storm."""
    source = lab.lab_paths().inventory
    inventory = yaml.safe_load(source.read_text())
    inventory["lab"]["hosts"]["vps2"]["ansible_port"] = 1  # nothing listens there
    broken = tmp_path / "hosts.yml"
    broken.write_text(yaml.safe_dump(inventory))
    controller = controller_for(settings_with_state(tmp_path, path=str(broken)))
    inject("service_crash", "vps2")
    try:
        wait_prometheus_sees_crash(controller, "vps2")
        first = controller.sweep()
        (action,) = first.actions
        assert action.state == IncidentState.ESCALATED
        assert "unreachable" in " ".join(action.reasons)
        assert first.exit_code == 1
        runs = len(controller.store.history(0))
        for _ in range(3):
            again = controller.sweep()
            assert [a.verdict for a in again.actions] == ["open"]
        assert len(controller.store.history(0)) == runs, "selfheal retried an unreachable host"
    finally:
        heal_by_hand("vps2")
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and controller.store.active():
        controller.sweep()
        time.sleep(0.3)
    assert controller.store.active() == [], "the escalation did not clear once healthy"


def test_wrong_host_key_is_refused_not_trusted(lab_fleet: None, tmp_path: Path) -> None:
    """Host key checking stays on: a host presenting a key we did not pin is never touched."""
    paths = lab.lab_paths()
    wrong_key = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(wrong_key)],
                   check=True)
    pinned = tmp_path / "known_hosts"
    public = wrong_key.with_suffix(".pub").read_text().split()
    pinned.write_text(f"{host_address(1)} {public[0]} {public[1]}\n")
    inventory = yaml.safe_load(paths.inventory.read_text())
    host = inventory["lab"]["hosts"]["vps1"]
    host["ansible_ssh_common_args"] = (f"-o UserKnownHostsFile={pinned} "
                                       "-o StrictHostKeyChecking=yes")
    broken = tmp_path / "hosts.yml"
    broken.write_text(yaml.safe_dump(inventory))
    controller = controller_for(settings_with_state(tmp_path, path=str(broken)))
    before = started_at("vps1")
    inject("service_crash", "vps1")
    try:
        wait_prometheus_sees_crash(controller, "vps1")
        (action,) = controller.sweep().actions
        assert action.state == IncidentState.ESCALATED
        assert "host key verification failed" in " ".join(action.reasons).lower()
        assert unit_state("vps1") == "failed", "selfheal acted on a host it could not verify"
    finally:
        heal_by_hand("vps1")
    assert started_at("vps1") != before  # only our manual restart touched it
