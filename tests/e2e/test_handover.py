"""On the lab: a held fleet resumes by itself, and a human's `remediate` works as typed.

The two reproductions from the trust issue, with real hosts, sshd, systemd and Ansible.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from orchestrator import lab
from orchestrator.models import IncidentState
from orchestrator.wiring import controller_for
from tests.e2e.test_heal import (
    UNIT,
    heal_by_hand,
    inject,
    run_cli,
    settings_with_state,
    started_at,
    unit_state,
    wait_prometheus_sees_crash,
)

pytestmark = pytest.mark.e2e


def test_held_fleet_resumes_when_a_human_fixes_most_of_it(lab_fleet: None,
                                                          tmp_path: Path) -> None:
    controller = controller_for(settings_with_state(tmp_path))
    hosts = sorted(h for h, host in controller.inventory.hosts.items() if "app" in host.groups)
    try:
        for host in hosts:
            inject("service_crash", host)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            verdicts, _, _ = controller.look()
            if sum(1 for v in verdicts if v.diagnoses) == len(hosts):
                break
            time.sleep(0.2)
        report = controller.sweep()
        assert {a.state for a in report.actions} == {IncidentState.HELD}, report.actions
        assert all(unit_state(h) == "failed" for h in hosts)  # nothing touched
        last = hosts[-1]
        for host in hosts[:-1]:
            heal_by_hand(host)
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline and unit_state(last) != "active":
            controller.sweep()
            time.sleep(0.5)
        assert unit_state(last) == "active", "the held host was never healed"
        (incident,) = [i for i in controller.store.incidents() if i.host == last]
        assert incident.state is IncidentState.RESOLVED
        assert [t["to"] for t in controller.store.transitions(incident.id)] == [
            "detected", "diagnosed", "planned", "held", "remediating", "verifying", "resolved"]
    finally:
        for host in hosts:
            if unit_state(host) != "active":
                heal_by_hand(host)


def test_remediate_by_hand_with_the_health_url_typed_out(lab_fleet: None,
                                                         tmp_path: Path) -> None:
    before = started_at("vps2")
    done = run_cli("remediate", "vps2", "service_restart", "-p", f"unit={UNIT}",
                   "-p", "service_restart_health_url=http://127.0.1.2:8080/healthz",
                   "--by", "oncall-ann",
                   "--json", config=lab.lab_paths().settings_file, state=tmp_path / "state")
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(done.stdout)
    assert result["outcome"]["status"] == "succeeded" and result["by"] == "oncall-ann"
    assert result["params"]["service_restart_health_url"] == "http://127.0.1.2:8080/healthz"
    assert started_at("vps2") != before and unit_state("vps2") == "active"
    shown = run_cli("audit", "log", "--json", config=lab.lab_paths().settings_file,
                    state=tmp_path / "state")
    manual = [r for r in json.loads(shown.stdout)["records"]
              if r["action"] == "manual.remediate"]
    assert manual and manual[0]["payload"]["by"] == "oncall-ann"


def test_remediate_by_hand_fills_labels_from_the_crashed_series(lab_fleet: None,
                                                                tmp_path: Path) -> None:
    controller = controller_for(settings_with_state(tmp_path))
    inject("service_crash", "vps3")
    try:
        wait_prometheus_sees_crash(controller, "vps3")
        done = run_cli("remediate", "vps3", "service_restart", "--json",
                       config=lab.lab_paths().settings_file, state=tmp_path / "state")
        assert done.returncode == 0, done.stdout + done.stderr
        assert json.loads(done.stdout)["params"]["service_restart_unit"] == UNIT
        assert unit_state("vps3") == "active"
    finally:
        if unit_state("vps3") != "active":
            heal_by_hand("vps3")
