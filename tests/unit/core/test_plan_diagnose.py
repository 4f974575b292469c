"""Diagnosis from findings, and plans that refuse unsafe label values."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, strategies as st

from orchestrator.core.diagnose import diagnose
from orchestrator.core.plan import build_plan, first_remediation
from orchestrator.errors import TargetError, UnsafeValueError
from orchestrator.models import Diagnosis, Finding, Health
from orchestrator.rules import Rules, load_rules
from tests.conftest import ROLES_DIR, RULES_DIR

LABELS = {"instance": "127.0.1.2:8080", "unit": "selfheal-demo.service", "job": "demo"}


def finding(host: str, signal: str, health: Health,
            labels: dict[str, str] | None = None) -> Finding:
    return Finding(host=host, signal=signal, health=health, observed_at=1.0,
                   labels=labels or {})


def test_crash_diagnosed_when_node_is_up(rules: Rules) -> None:
    findings = [finding("vps2", "service_up", Health.FIRING, LABELS),
                finding("vps2", "node_up", Health.HEALTHY),
                *(finding("vps1", s, Health.HEALTHY) for s in rules.faults.signals)]
    verdicts = {v.host: v for v in diagnose(findings, rules.faults, ["vps1", "vps2"])}
    assert verdicts["vps1"].health is Health.HEALTHY and not verdicts["vps1"].diagnoses
    (d,) = verdicts["vps2"].diagnoses
    assert d.fault == "service_crash" and d.labels["unit"] == "selfheal-demo.service"


def test_unknown_node_means_no_diagnosis(rules: Rules) -> None:
    findings = [finding("vps2", "service_up", Health.FIRING, LABELS),
                finding("vps2", "node_up", Health.UNKNOWN)]
    (v,) = diagnose(findings, rules.faults, ["vps2"])
    assert v.health is Health.UNKNOWN and not v.diagnoses
    assert "not acting" in v.notes[0]


def test_host_without_data_is_unknown_not_healthy(rules: Rules) -> None:
    (v,) = diagnose([], rules.faults, ["vps3"])
    assert v.health is Health.UNKNOWN


def crash(labels: dict[str, str]) -> Diagnosis:
    return Diagnosis("vps2", "service_crash", 1.0, (), ("service_restart",), labels=labels)


def test_plan_binds_params(rules: Rules) -> None:
    entry = first_remediation(crash(LABELS), rules.catalog)
    assert entry is not None
    plan = build_plan(crash(LABELS), entry, ("vps2",))
    assert plan.params == {"unit": "selfheal-demo.service",
                           "health_url": "http://127.0.1.2:8080/healthz"}
    assert plan.targets == ("vps2",)


@pytest.mark.parametrize("unit", [
    "x.service; rm -rf /", "{{ lookup('pipe', 'id') }}.service", "$(reboot).service",
    "a\nb.service", "`id`.service", "../../etc/passwd",
])
def test_plan_refuses_metacharacters(rules: Rules, unit: str) -> None:
    entry = rules.catalog.remediations["service_restart"]
    with pytest.raises(UnsafeValueError, match="refused parameter 'unit'"):
        build_plan(crash({**LABELS, "unit": unit}), entry, ("vps2",))


def test_plan_refuses_empty_targets(rules: Rules) -> None:
    with pytest.raises(TargetError, match="never 'all hosts'"):
        build_plan(crash(LABELS), rules.catalog.remediations["service_restart"], ())


_RULES = load_rules(RULES_DIR, ROLES_DIR)


@given(st.text(min_size=1, max_size=40))
def test_no_param_value_outside_its_pattern(unit: str) -> None:
    """Whatever a label says, a plan either refuses it or carries a value matching the pattern."""
    entry = _RULES.catalog.remediations["service_restart"]
    try:
        plan = build_plan(crash({**LABELS, "unit": unit}), entry, ("vps2",))
    except UnsafeValueError:
        return
    assert re.fullmatch(entry.params["unit"].pattern, plan.params["unit"])
    assert not set(plan.params["unit"]) & set(";|&$`{}<>()\n'\" ")
