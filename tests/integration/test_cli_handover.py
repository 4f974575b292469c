"""Where a human steps in, through the real ``selfheal`` command: approve, retry, remediate.

A real Prometheus and store; the hosts are unreachable addresses, so any test that would reach
Ansible here has failed already (every path below is decided before a play could start).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from orchestrator.cli.app import app
from orchestrator.config import PROJECT_ROOT
from tests.conftest import write_fault_rules
from tests.integration.conftest import Exporter, RealPrometheus
from tests.integration.test_engine import FAULTS

pytestmark = pytest.mark.integration
runner = CliRunner()
NET = "127.0.5"


def config(tmp_path: Path, prometheus: RealPrometheus, policy: str, tier: int = 3) -> Path:
    rules = tmp_path / "rules"
    rules.mkdir()
    catalog = (PROJECT_ROOT / "rules" / "remediations.yml").read_text()
    (rules / "remediations.yml").write_text(catalog.replace("risk_tier: 1", f"risk_tier: {tier}"))
    write_fault_rules(rules, FAULTS)
    (rules / "policy.yml").write_text(policy)
    (tmp_path / "hosts.ini").write_text("\n".join(
        f"h{i} selfheal_prometheus_host={NET}.{i}" for i in (1, 2, 3)) + "\n")
    path = tmp_path / "selfheal.yml"
    path.write_text(f"""
prometheus: {{url: "{prometheus.url}"}}
inventory: {{path: hosts.ini}}
state: {{dir: state}}
rules: {{dir: rules}}
""")
    return path


def crash(exporter: Exporter, prometheus: RealPrometheus, host: int) -> None:
    for i in (1, 2, 3):
        exporter.gauge.labels(f"{NET}.{i}:9100", "node").set(1)
        exporter.gauge.labels(f"{NET}.{i}:8080", "app.service").set(0 if i == host else 1)
    for i in (1, 2, 3):
        prometheus.wait_for(f'selfheal_test_service_up{{instance="{NET}.{i}:8080"}} == '
                            f'{0 if i == host else 1}')


def run(cfg: Path, *args: str) -> tuple[int, dict]:
    done = runner.invoke(app, ["--config", str(cfg), *args, "--json"])
    return done.exit_code, json.loads(done.stdout)


def test_approve_needs_a_configured_approver_and_binds_the_plan(
        tmp_path: Path, prometheus: RealPrometheus, exporter: Exporter) -> None:
    crash(exporter, prometheus, 2)
    (tmp_path / "a").mkdir()
    none = config(tmp_path / "a", prometheus, "mode: strict\n")
    code, swept = run(none, "sweep")
    (action,) = swept["actions"]
    assert code == 1 and action["state"] == "awaiting_approval"
    code, err = run(none, "incidents", "approve", str(action["incident_id"]), "--by", "alice")
    assert code == 2 and "no approvers are configured" in err["message"]
    assert "approvers: [alice" in err["message"]  # says how to configure it

    (tmp_path / "b").mkdir()
    cfg = config(tmp_path / "b", prometheus, "mode: strict\napprovers: [alice]\n")
    code, swept = run(cfg, "sweep")
    incident = swept["actions"][0]["incident_id"]
    code, err = run(cfg, "incidents", "approve", str(incident), "--by", "mallory")
    assert code == 2 and "'mallory' is not an approver" in err["message"]
    code, ok = run(cfg, "incidents", "approve", str(incident), "--by", "alice")
    assert code == 0 and ok["approved_by"] == "alice" and len(ok["plan_digest"]) == 64
    assert ok["params"]["unit"] == "app.service"
    code, shown = run(cfg, "incidents", "show", str(incident))
    assert shown["incident"]["detail"]["approved_digest"] == ok["plan_digest"]
    code, log = run(cfg, "audit", "log")
    (approved,) = [r["payload"] for r in log["records"] if r["action"] == "incident.approved"]
    assert approved["by"] == "alice" and approved["os_user"]  # who really typed it, too
    code, err = run(cfg, "incidents", "retry", str(incident))
    assert code == 2 and "retry takes escalated, rolled-back or held" in err["message"]


def test_remediate_by_hand_is_guarded_and_says_why(tmp_path: Path, prometheus: RealPrometheus,
                                                   exporter: Exporter) -> None:
    crash(exporter, prometheus, 1)
    cfg = config(tmp_path, prometheus, "mode: disabled\n", tier=1)
    code, held = run(cfg, "remediate", "h1", "service_restart", "--by", "erin")
    assert code == 1 and held["verdict"] == "hold" and held["outcome"] is None
    assert "disabled" in held["reasons"][0] and held["by"] == "erin"
    assert held["params"] == {"unit": "app.service",
                              "health_url": f"http://{NET}.1:8080/healthz"}  # from the series
    code, sshd = run(cfg, "remediate", "h1", "service_restart", "-p", "unit=sshd.service",
                     "-p", f"health_url=http://{NET}.1:22/healthz", "--force", "--reason", "t")
    assert code == 1 and sshd["verdict"] == "refuse" and not sshd["forced"]
    assert "protected_units" in sshd["reasons"][0]
    code, bad = run(cfg, "remediate", "h1", "service_restart", "-p", "health_url=http://x/;id")
    assert code == 2 and "health_url" in bad["message"] and "does not match" in bad["message"]
    code, bad = run(cfg, "remediate", "h1", "service_restart", "-p", "unit=other.service")
    assert code == 2 and "-p NAME=VALUE" in bad["message"]  # not app.service's health URL
    code, bad = run(cfg, "remediate", "h1", "service_restart", "--force")
    assert code == 2 and "--reason" in bad["message"]
    code, log = run(cfg, "audit", "log")
    refused = [r["payload"] for r in log["records"] if r["action"] == "manual.refused"]
    assert code == 0 and refused[0]["by"] == "erin" and len(refused) == 2


def test_retry_of_a_held_incident_prints_what_happened(tmp_path: Path,
                                                       prometheus: RealPrometheus,
                                                       exporter: Exporter) -> None:
    """Held while self-healing is off; switched on, `incidents retry` runs it for real. The
    host's SSH port is closed (ansible_port=1), so the run is unreachable: escalated, exit 1,
    with the action and its reasons in the JSON and the table."""
    crash(exporter, prometheus, 3)
    cfg = config(tmp_path, prometheus, "mode: disabled\n", tier=1)
    (tmp_path / "hosts.ini").write_text("\n".join(
        f"h{i} selfheal_prometheus_host={NET}.{i} ansible_host=127.0.0.1 ansible_port=1"
        for i in (1, 2, 3)) + "\n")
    code, swept = run(cfg, "sweep")
    (held,) = swept["actions"]
    assert code == 1 and held["state"] == "held"
    (tmp_path / "rules" / "policy.yml").write_text("mode: strict\n")
    code, retried = run(cfg, "incidents", "retry", str(held["incident_id"]), "--by", "frank")
    action = retried["action"]
    assert code == 1 and action["state"] == "escalated" and action["host"] == "h3"
    assert "unreachable" in " ".join(action["reasons"])
    table = runner.invoke(app, ["--config", str(cfg), "incidents", "show",
                                str(held["incident_id"])])
    assert "held" in table.stdout and "escalated" in table.stdout
