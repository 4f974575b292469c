"""The example alert rules in docs/alerts are valid and fire when they should (promtool).

``promtool`` comes with Debian's prometheus package (``make deps``). The rule test feeds the
series selfheal's health textfile exports and checks each alert at chosen times.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from orchestrator.config import PROJECT_ROOT

PROMTOOL = "/usr/bin/promtool"
RULES = PROJECT_ROOT / "docs" / "alerts" / "selfheal-rules.yml"
NOT_SWEEPING = {
    "summary": "selfheal on ctl:9100 has not swept for 5 minutes",
    "description": "The last sweep that could read the fleet's metrics ended 6m 0s ago. Check "
                   "`systemctl status selfheal-sweep.timer` and the journal of "
                   "selfheal-sweep.service on the controller.",
}


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    if not Path(PROMTOOL).exists():
        pytest.fail(f"{PROMTOOL} missing: run `make deps` (Debian package prometheus)")
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, check=False,
                          timeout=60)


def test_rules_file_is_valid() -> None:
    done = promtool("check", "rules", str(RULES))
    assert done.returncode == 0, done.stdout + done.stderr


def test_alerts_fire_when_selfheal_stops_or_escalates(tmp_path: Path) -> None:
    sweeping = {"series": 'selfheal_last_successful_sweep_timestamp_seconds{instance="ctl:9100"}',
                "values": "0+60x5 300x15"}  # a sweep a minute, then none after minute 5
    cases = {"rule_files": [str(RULES)], "evaluation_interval": "1m", "tests": [
        {"interval": "1m", "input_series": [
            sweeping,
            {"series": 'selfheal_incidents{instance="ctl:9100", state="escalated"}',
             "values": "0 0 1 1 1"}],
         "alert_rule_test": [
             {"eval_time": "9m", "alertname": "SelfhealNotSweeping", "exp_alerts": []},
             {"eval_time": "11m", "alertname": "SelfhealNotSweeping", "exp_alerts": [
                 {"exp_labels": {"severity": "page", "instance": "ctl:9100"},
                  "exp_annotations": NOT_SWEEPING}]},
             {"eval_time": "1m", "alertname": "SelfhealIncidentEscalated", "exp_alerts": []},
             {"eval_time": "3m", "alertname": "SelfhealIncidentEscalated", "exp_alerts": [
                 {"exp_labels": {"severity": "page", "instance": "ctl:9100",
                                 "state": "escalated"},
                  "exp_annotations": {
                      "summary": "1 selfheal incident(s) escalated on ctl:9100",
                      "description": "Run `selfheal incidents list` on the controller, then "
                                     "`selfheal incidents show ID` for the reasons."}}]},
             {"eval_time": "11m", "alertname": "SelfhealNeverSwept", "exp_alerts": []}]},
        {"interval": "1m", "input_series": [], "alert_rule_test": [
            {"eval_time": "11m", "alertname": "SelfhealNeverSwept", "exp_alerts": [
                {"exp_labels": {"severity": "page"}, "exp_annotations": {
                    "summary": "no selfheal controller reports a successful sweep",
                    "description": "selfheal_last_successful_sweep_timestamp_seconds is "
                                   "absent. Check that health.textfile_path points into "
                                   "node_exporter's --collector.textfile.directory and that "
                                   "`selfheal sweep` runs."}}]}]}]}
    path = tmp_path / "selfheal-rules.test.yml"
    path.write_text(yaml.safe_dump(cases))
    done = promtool("test", "rules", str(path))
    assert done.returncode == 0, done.stdout + done.stderr
