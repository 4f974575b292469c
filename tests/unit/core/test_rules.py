"""The rules files parse, and every mistake names the file, the line and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.core.catalog import parse_catalog
from orchestrator.core.faults import parse_faults
from orchestrator.core.policy import parse_policy
from orchestrator.core.signals import parse_signals
from orchestrator.errors import RulesError
from orchestrator.rules import Rules, load_rules
from tests.conftest import ROLES_DIR


def test_project_rules_load(rules: Rules) -> None:
    assert "service_restart" in rules.catalog.remediations
    assert rules.faults.faults["service_crash"].remediations == ("service_restart",)
    assert rules.policy.mode == "strict"


def test_yaml_syntax_error_names_line() -> None:
    with pytest.raises(RulesError, match=r"remediations.yml:3: not valid YAML"):
        parse_catalog("remediations:\n  a:\n    role: [unclosed\n", "remediations.yml")


def test_unknown_key_names_line_and_fix(rules: Rules) -> None:
    text = (
        "remediations:\n"
        "  svc:\n"
        "    role: service_restart\n"
        "    description: x\n"
        "    risk_tier: 1\n"
        "    verify: {signal: service_up}\n"
        "    retries: 3\n"
    )
    with pytest.raises(RulesError) as err:
        parse_catalog(text, "remediations.yml")
    msg = str(err.value)
    assert "remediations.yml:7" in msg and "retries" in msg and "remove it" in msg


def test_risk_tier_out_of_range() -> None:
    text = ("remediations:\n  svc:\n    role: r\n    description: x\n    risk_tier: 7\n"
            "    verify: {signal: s}\n")
    with pytest.raises(RulesError, match=r"remediations.yml:5: remediations.svc.risk_tier"):
        parse_catalog(text, "remediations.yml")


def test_fault_with_unknown_signal_names_known_ones(rules: Rules) -> None:
    text = "faults:\n  f:\n    description: d\n    when_firing: [nope]\n"
    with pytest.raises(RulesError, match=r"faults.yml:4: .*unknown signal 'nope'.*service_up"):
        parse_faults(text, rules.catalog, rules.faults.signals, "faults.yml")


def test_fault_with_remediation_outside_catalog(rules: Rules) -> None:
    text = ("faults:\n  f:\n    description: d\n    when_firing: [service_up]\n"
            "    remediations: [rm_rf]\n")
    with pytest.raises(RulesError, match=r"faults.yml:5: .*'rm_rf' is not in remediations.yml"):
        parse_faults(text, rules.catalog, rules.faults.signals, "faults.yml")


def test_bad_condition() -> None:
    with pytest.raises(RulesError, match=r"signals.yml:2: .*write a comparison"):
        parse_signals("signals:\n  s: {promql: up, firing_when: 'down'}\n", "signals.yml")


def test_signals_left_in_faults_yml_are_sent_to_signals_yml(rules: Rules) -> None:
    text = "signals:\n  s: {promql: up, firing_when: '== 0'}\nfaults: {}\n"
    with pytest.raises(RulesError, match=r"faults.yml:2: .*signals.yml"):
        parse_faults(text, rules.catalog, rules.faults.signals, "faults.yml")


def test_a_signal_needs_a_rule_or_a_direction() -> None:
    with pytest.raises(RulesError, match=r"signals.yml:2: .*firing_when.*harmful"):
        parse_signals("signals:\n  s: {promql: up}\n", "signals.yml")


def test_a_fault_on_a_detector_needs_a_watched_signal(rules: Rules) -> None:
    text = ("faults:\n  f:\n    description: d\n"
            "    when_detected: [{signal: service_up, detector: forecast}]\n")
    with pytest.raises(RulesError, match=r"faults.yml:4: .*not a signal the detectors watch"):
        parse_faults(text, rules.catalog, rules.faults.signals, "faults.yml")


def test_policy_mode_checked() -> None:
    with pytest.raises(RulesError, match=r"policy.yml:1: mode"):
        parse_policy("mode: yolo\n", "policy.yml")


def test_param_not_in_role_argument_spec(rules_copy: Path) -> None:
    path = rules_copy / "remediations.yml"
    path.write_text(path.read_text().replace("      service_restart_health_url:",
                                             "      service_restart_healthz_url:"))
    with pytest.raises(RulesError,
                       match=r"\['service_restart_healthz_url'\] are not options of role"):
        load_rules(rules_copy, ROLES_DIR)


def test_missing_rules_file(rules_copy: Path) -> None:
    (rules_copy / "policy.yml").unlink()
    with pytest.raises(RulesError, match=r"policy\.yml: missing"):
        load_rules(rules_copy, ROLES_DIR)
