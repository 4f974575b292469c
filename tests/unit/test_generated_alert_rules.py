"""`selfheal alert-rules`: one alert per fault, labelled with it, accepted by promtool."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import yaml
from typer.testing import CliRunner

from orchestrator.alert_rules import alerting_rules
from orchestrator.cli.app import app
from orchestrator.rules import Rules
from orchestrator.sources.alertmanager import fault_of


def test_every_promql_fault_gets_an_alert_with_its_label(rules: Rules) -> None:
    data, skipped = alerting_rules(rules.faults)
    alerts = {r["labels"]["fault"]: r for r in data["groups"][0]["rules"]}
    for name, fault in rules.faults.faults.items():
        if not fault.when_detected:
            signal = rules.faults.signals[fault.lead]
            assert alerts[name]["expr"].startswith(f"({signal.promql.strip()})")
        else:  # e.g. memory_exhaustion_forecast: its PromQL part alone is not the fault
            assert name not in alerts
            assert any(line.startswith(f"{name}:") for line in skipped)
    assert any(f.when_detected and f.when_firing for f in rules.faults.faults.values())


def test_a_description_is_never_a_template(rules: Rules) -> None:
    fault = next(iter(rules.faults.faults.values()))
    bent = rules.faults.model_copy(update={"faults": {fault.name: fault.model_copy(
        update={"description": "boom {{ printf \"%s\" $value }}"})}})
    data, _ = alerting_rules(bent)
    assert "{{" not in data["groups"][0]["rules"][0]["annotations"]["description"]


def test_the_cli_writes_a_file_promtool_accepts(tmp_path: Path) -> None:
    out = tmp_path / "selfheal-faults.yml"
    got = CliRunner().invoke(app, ["alert-rules", "--out", str(out)])
    assert got.exit_code == 0, got.output
    assert yaml.safe_load(out.read_text())["groups"][0]["rules"]
    done = subprocess.run(["/usr/bin/promtool", "check", "rules", str(out)], text=True,
                          capture_output=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_json_output_holds_the_rule_file_and_says_what_is_not_alerted(
        tmp_path: Path) -> None:
    out = tmp_path / "written.yml"
    got = CliRunner().invoke(app, ["alert-rules", "--out", str(out), "--json"])
    assert got.exit_code == 0, got.output
    shown = json.loads(got.stdout)
    assert shown["written"] == str(out) and yaml.safe_load(out.read_text()) == shown["rule_file"]
    faults = {r["labels"]["fault"] for r in shown["rule_file"]["groups"][0]["rules"]}
    assert {"service_crash", "disk_full"} <= faults
    assert any(line.startswith("memory_exhaustion_forecast:") for line in shown["not_alerted"])
    as_json = tmp_path / "rules.json"  # the object alone is a rule file Prometheus loads
    as_json.write_text(json.dumps(shown["rule_file"]))
    done = subprocess.run(["/usr/bin/promtool", "check", "rules", str(as_json)], text=True,
                          capture_output=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_an_alert_keeps_the_subject_labels_and_maps_back_to_the_incident_key(
        rules: Rules, tmp_path: Path) -> None:
    data, _ = alerting_rules(rules.faults)
    (tmp_path / "rules.yml").write_text(yaml.safe_dump(data))
    labels = {"alertname": "SelfhealUnitFailed", "fault": "unit_failed", "severity": "selfheal",
              "instance": "h1:9100", "job": "node", "name": "nginx.service",
              "state": "failed", "type": "service", "unit": "nginx.service"}
    series = ('node_systemd_unit_state{instance="h1:9100", job="node", name="nginx.service", '
              'state="failed", type="service"}')
    cases = {"rule_files": ["rules.yml"], "evaluation_interval": "1m", "tests": [{
        "interval": "1m", "input_series": [{"series": series, "values": "1x5"}],
        "alert_rule_test": [{"eval_time": "2m", "alertname": "SelfhealUnitFailed",
                             "exp_alerts": [{"exp_labels": labels, "exp_annotations": {
                                 "summary": "unit_failed unit nginx.service on h1:9100",
                                 "description": rules.faults.faults["unit_failed"]
                                 .description}}]}]}]}
    (tmp_path / "test.yml").write_text(yaml.safe_dump(cases))
    done = subprocess.run(["/usr/bin/promtool", "test", "rules", "test.yml"], cwd=tmp_path,
                          text=True, capture_output=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    # what serve makes of those labels: the fault and subject the sweep keys its incident by
    assert fault_of(labels, rules.faults) == ("unit_failed", "unit=nginx.service")
