"""Comparisons in the rules: malformed ones are refused at load time naming file and line;
samples that are not finite numbers (NaN, +Inf, -Inf) satisfy no comparison."""

from __future__ import annotations

import math

import numpy as np
import pytest

from orchestrator.core.detect.patterns import pattern_holds
from orchestrator.core.detect.rules import compare, parse_detection
from orchestrator.core.detect.thresholds import ThresholdClock
from orchestrator.core.signals import Signal, parse_signals
from orchestrator.errors import RulesError

SIGNALS = """signals:
  up_ok: {promql: up, firing_when: "== 0"}
  load:
    promql: node_load1
    firing_when: "%s"
"""


@pytest.mark.parametrize("bad", ["== 1.2.3", "> 1..2", "< nan", ">= inf", "== -", "> 1e", "=> 1"])
def test_a_malformed_firing_when_is_refused_naming_file_and_line(bad: str) -> None:
    with pytest.raises(RulesError, match=r"signals.yml:5: signals.load.firing_when: .*"
                                         r"write a comparison such as") as err:
        parse_signals(SIGNALS % bad, "signals.yml")
    assert bad in str(err.value)


@pytest.mark.parametrize("good", ["== 0", "> 0.9", "<= -1.5", "!= 1e3", "< .5", ">= 2E-3"])
def test_well_formed_comparisons_still_parse(good: str) -> None:
    assert parse_signals(SIGNALS % good, "signals.yml")["load"].firing_when == good


def test_a_malformed_detection_threshold_is_refused_naming_file_and_line() -> None:
    text = "signals:\n  cpu:\n    promql: x\n    harmful: up\n    threshold: '> 0.9.1'\n"
    with pytest.raises(RulesError, match=r"detection.yml:5: signals.cpu.threshold: .*0.9.1"):
        parse_detection(text, "detection.yml")


def test_a_malformed_pattern_comparison_is_refused_naming_file_and_line() -> None:
    text = ("signals:\n  cpu: {promql: x, harmful: up}\npatterns:\n  p:\n    description: d\n"
            "    when:\n      cpu: '< 1.2.3'\n")
    with pytest.raises(RulesError, match=r"detection.yml:7: patterns.p.when.cpu: .*1.2.3"):
        parse_detection(text, "detection.yml")


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_a_signal_never_fires_on_a_value_that_is_not_a_number(value: float) -> None:
    for condition in ("== 0", "!= 0", "> 0.9", "< 0.1"):
        assert Signal(name="s", promql="x", firing_when=condition).fires(value) is False


def test_detector_comparisons_do_not_hold_on_infinities() -> None:
    assert compare("> 0.9", np.array([np.inf, np.nan, 1.0, -np.inf])).tolist() == [
        False, False, True, False]
    assert compare("< 0.1", np.array([-np.inf])).tolist() == [False]


def test_an_infinite_sample_neither_starts_nor_ends_a_threshold_hold() -> None:
    rules = parse_detection("signals:\n  cpu: {promql: x, harmful: up, threshold: '> 0.9', "
                            "for_s: 60}\n", "d.yml")
    rule = rules.signals["cpu"]
    clock = ThresholdClock(1)
    assert not clock.step(rule, 0.0, np.array([np.inf]))[0]  # does not start a hold
    assert not clock.step(rule, 30.0, np.array([0.95]))[0]  # the hold starts here
    assert not clock.step(rule, 60.0, np.array([-np.inf]))[0]  # neither fires nor ends it
    assert clock.step(rule, 90.0, np.array([0.95]))[0]  # held 60 s: fires


def test_a_pattern_does_not_match_on_infinite_samples() -> None:
    rules = parse_detection("signals:\n  cpu: {promql: x, harmful: up}\npatterns:\n  p:\n"
                            "    description: d\n    when: {cpu: '!= 0'}\n", "d.yml")
    x = {"cpu": np.array([np.inf, 2.0])}
    z = {"cpu": np.zeros(2)}
    assert pattern_holds(rules.patterns["p"], x, z, 3.0).tolist() == [False, True]
