"""rules/detection.yml parsing: frozen records, errors that name file, line and fix."""

from __future__ import annotations

import pytest

from orchestrator.config import PROJECT_ROOT
from orchestrator.core.detect.rules import parse_detection
from orchestrator.errors import RulesError
from orchestrator.rules import load_detection, load_signals

TEXT = (PROJECT_ROOT / "rules" / "detection.yml").read_text()


def test_project_file_parses_with_the_seed_patterns() -> None:
    rules = load_detection(PROJECT_ROOT / "rules")
    assert {"cpu", "memory_available", "disk_available", "network_in"} <= set(rules.signals)
    assert set(rules.patterns) == {"possible_ddos", "leak_and_write_amplification",
                                   "runaway_and_log_explosion"}
    assert rules.signals["memory_available"].exhaustion
    assert rules.harmful("memory_available") == "down"
    assert "disk_fill_rate" in rules.all_signals


def test_detectors_watch_the_one_signal_catalog_with_its_thresholds() -> None:
    catalog = load_signals(PROJECT_ROOT / "rules")
    rules = parse_detection(TEXT, "rules/detection.yml", catalog)
    assert set(rules.signals) == {n for n, s in catalog.items() if s.harmful}
    assert rules.signals["node_up"].threshold == catalog["node_up"].firing_when == "== 0"
    assert "service_up" not in rules.signals  # a rules-only signal has no harmful direction
    with pytest.raises(RulesError, match=r"d.yml:2: .*signals.yml"):
        parse_detection("signals:\n  cpu: {promql: x, harmful: up}\n", "d.yml", catalog)


def test_unknown_signal_in_a_pattern_names_the_line() -> None:
    text = """signals:
  cpu: {promql: x, harmful: up}
patterns:
  p:
    description: d
    when:
      cpu: high
      nope: low
"""
    with pytest.raises(RulesError, match=r"det.yml:8: patterns.p.when.nope: unknown signal"):
        parse_detection(text, "det.yml")


def test_bad_threshold_and_unknown_key_are_explained() -> None:
    with pytest.raises(RulesError, match=r"d.yml:3: .*comparison"):
        parse_detection("signals:\n  cpu:\n    threshold: 'very high'\n    promql: x\n"
                        "    harmful: up\n", "d.yml")
    with pytest.raises(RulesError, match="unknown key"):
        parse_detection("signals:\n  cpu: {promql: x, harmful: up, colour: red}\n", "d.yml")


def test_bad_yaml_and_bad_condition() -> None:
    with pytest.raises(RulesError, match="not valid YAML"):
        parse_detection("signals: [", "d.yml")
    with pytest.raises(RulesError, match="is not a condition"):
        parse_detection("signals:\n  cpu: {promql: x, harmful: up}\npatterns:\n  p:\n"
                        "    description: d\n    when: {cpu: sideways}\n", "d.yml")


def test_baseline_overrides_are_checked_against_the_streaming_defaults() -> None:
    base = "signals:\n  cpu: {promql: x, harmful: up}\ndefaults:\n  baseline:\n"
    rules = parse_detection(base + "    bump: 1.5\n", "d.yml")
    assert rules.defaults.baseline == {"bump": 1.5}
    with pytest.raises(RulesError, match=r"d.yml:5: defaults.baseline: .*unknown baseline "
                                         r"setting\(s\) \['bumpp'\]"):
        parse_detection(base + "    bumpp: 1.5\n", "d.yml")
