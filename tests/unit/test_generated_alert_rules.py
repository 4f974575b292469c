"""`selfheal alert-rules`: one alert per fault, labelled with it, accepted by promtool."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml
from typer.testing import CliRunner

from orchestrator.alert_rules import alerting_rules
from orchestrator.cli.app import app
from orchestrator.rules import Rules


def test_every_promql_fault_gets_an_alert_with_its_label(rules: Rules) -> None:
    data, skipped = alerting_rules(rules.faults)
    alerts = {r["labels"]["fault"]: r for r in data["groups"][0]["rules"]}
    for name, fault in rules.faults.faults.items():
        if fault.when_firing:
            signal = rules.faults.signals[fault.lead]
            assert alerts[name]["expr"].startswith(f"({signal.promql.strip()})")
        else:
            assert any(line.startswith(f"{name}:") for line in skipped)


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
