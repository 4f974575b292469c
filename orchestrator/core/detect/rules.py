"""Detection rules (``rules/detection.yml``): watched signals, thresholds, patterns, defaults.

Pure: ``parse_detection`` takes the YAML *text* and the file name (the caller reads the file) and
returns frozen records. Every error is a ``RulesError`` naming the file, the line and the fix.
Called by the CLI (``baseline train``, ``sweep``, ``detect-csv``), ``sources.features`` (the PromQL
per signal) and the benchmarks.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from orchestrator.core.comparison import OPERATORS, parse_comparison
from orchestrator.core.detect.stream import BaselineParams
from orchestrator.core.rulefile import fail, load_with_lines, validate
from orchestrator.core.signals import Signal

NAME = r"^[a-z][a-z0-9_]{0,62}$"
RELATIVE = ("high", "low", "not_high", "not_low")


def compare(condition: str, values: np.ndarray) -> np.ndarray:
    """Evaluate a comparison string such as ``"> 0.9"`` on an array; NaN and infinities (no
    usable sample) never satisfy it."""
    parsed = parse_comparison(condition)
    x = np.asarray(values, dtype=float)
    with np.errstate(invalid="ignore"):
        out = OPERATORS[parsed.op](x, parsed.threshold)  # type: ignore[arg-type]
    return np.asarray(out, dtype=bool) & np.isfinite(x)


class _Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SignalRule(_Rule):
    """One watched signal: its fleet-wide query, harmful direction and fixed threshold."""

    name: str = Field(pattern=NAME)
    promql: str = Field(min_length=1)
    harmful: Literal["up", "down"]
    threshold: str | None = None
    for_s: float = Field(0.0, ge=0)
    exhaustion: bool = False
    description: str = ""

    @field_validator("threshold")
    @classmethod
    def _threshold(cls, v: str | None) -> str | None:
        if v is not None:
            parse_comparison(v)  # a malformed one is refused at load time, naming the line
        return v


class DerivedSignal(_Rule):
    """A signal computed from another (not queried), e.g. the disk's fill rate."""

    name: str = Field(pattern=NAME)
    source: str = Field(alias="from")
    kind: Literal["fill_rate"]
    harmful: Literal["up", "down"] = "up"
    description: str = ""


class Condition(_Rule):
    """One clause of a pattern: a signal is high/low against its baseline, or compares."""

    signal: str
    test: str

    @property
    def relative(self) -> bool:
        return self.test in RELATIVE


class PatternRule(_Rule):
    """A multi-metric pattern: every condition holds for ``for_points`` sweeps."""

    name: str = Field(pattern=NAME)
    description: str
    when: tuple[Condition, ...]
    for_points: int = Field(3, ge=1)


class ForecastParams(_Rule):
    """Time to exhaustion of 0..1 ``available`` signals (robust trend over a window)."""

    window_s: float = Field(21600.0, gt=0, description="trend window (6 h)")
    horizon_s: float = Field(86400.0, gt=0, description="raise a finding when exhaustion is nearer")
    min_points: int = Field(60, ge=4, description="points the window needs before it judges")
    min_drop: float = Field(0.02, ge=0, description="decline over the window must exceed this")


class IForestParams(_Rule):
    """IsolationForest over per-host vectors of baseline surprises."""

    history_days: float = Field(7.0, gt=0)
    trees: int = Field(100, ge=10)
    contamination: float = Field(0.001, gt=0, lt=0.5)
    max_rows: int = Field(200_000, ge=1000, description="training rows sampled at most")
    seed: int = 42


class CombinerParams(_Rule):
    """How scores become findings."""

    min_confidence: float = Field(0.5, ge=0, le=1)
    dedup_s: float = Field(3600.0, ge=0, description="one finding per host and subject per window")


class DetectionDefaults(_Rule):
    pattern_z: float = Field(3.0, gt=0)
    confirm_points: int = Field(10, ge=1, description="sweeps a baseline surprise must last")
    forecast: ForecastParams = ForecastParams()
    isolation_forest: IForestParams = IForestParams()
    combiner: CombinerParams = CombinerParams()
    baseline_max_age_s: float = Field(172800.0, gt=0, description="older models are stale")
    baseline: Mapping[str, float] = Field(
        default_factory=dict, description="overrides of the streaming baseline's frozen defaults "
        "(orchestrator.core.detect.stream.BaselineParams); sweep, detect-csv and the benchmark "
        "all apply them")

    @field_validator("baseline")
    @classmethod
    def _baseline(cls, v: Mapping[str, float]) -> Mapping[str, float]:
        known = {f.name for f in fields(BaselineParams)}
        unknown = sorted(set(v) - known)
        if unknown:
            raise ValueError(f"unknown baseline setting(s) {unknown}; use some of {sorted(known)}")
        return v

    def baseline_params(self) -> BaselineParams:
        """The streaming baseline's settings: its frozen defaults with ``baseline:`` applied.
        The sweep, ``detect-csv`` and the benchmarks all take them from here."""
        return BaselineParams.from_mapping(dict(self.baseline))


class DetectionRules(_Rule):
    signals: Mapping[str, SignalRule]
    derived: Mapping[str, DerivedSignal]
    patterns: Mapping[str, PatternRule]
    defaults: DetectionDefaults

    @property
    def all_signals(self) -> tuple[str, ...]:
        return (*self.signals, *self.derived)

    def harmful(self, signal: str) -> str:
        rule = self.signals.get(signal) or self.derived.get(signal)
        return rule.harmful if rule is not None else "up"


class _File(_Rule):
    signals: dict[str, dict[str, Any]] = Field(default_factory=dict)
    derived: dict[str, dict[str, Any]] = Field(default_factory=dict)
    patterns: dict[str, dict[str, Any]] = Field(default_factory=dict)
    defaults: dict[str, Any] = Field(default_factory=dict)


def watched(catalog: Mapping[str, Signal]) -> dict[str, SignalRule]:
    """The catalog signals the detectors watch (those with ``harmful``), as detector rules."""
    return {
        name: SignalRule(name=name, promql=s.promql, harmful=s.harmful, threshold=s.firing_when,
                         for_s=s.for_s, exhaustion=s.exhaustion, description=s.description)
        for name, s in catalog.items() if s.harmful is not None
    }


def parse_detection(text: str, filename: str = "detection.yml",
                    catalog: Mapping[str, Signal] | None = None) -> DetectionRules:
    """Parse ``rules/detection.yml`` text into frozen records; errors name file, line and fix.

    The signals come from the signal ``catalog`` (``rules/signals.yml``); without one, the text
    carries its own ``signals:`` in the same grammar (``threshold`` for ``firing_when``), as a
    standalone file for tests and benchmarks does.
    """
    data, lines = load_with_lines(text, filename)
    if not isinstance(data, dict):
        raise fail(filename, lines, (), "expected a mapping with `derived:`, `patterns:` and "
                   "`defaults:`")
    top = validate(_File, data, filename, lines)
    if catalog is not None and top.signals:
        raise fail(filename, lines, ("signals",), "signals live in signals.yml (one catalog for "
                   "rules and detectors); move them there")
    if catalog is None and not top.signals:
        raise fail(filename, lines, (), "no signals: give the signal catalog or `signals:`")
    signals: dict[str, SignalRule] = watched(catalog) if catalog is not None else {}
    for name, body in top.signals.items():
        if not isinstance(body, dict):
            raise fail(filename, lines, ("signals", name), "expected a mapping with promql, "
                       "harmful and threshold")
        signals[name] = validate(SignalRule, {"name": name, **body}, filename, lines,
                                 ("signals", name))
    derived: dict[str, DerivedSignal] = {}
    for name, body in top.derived.items():
        rule = validate(DerivedSignal, {"name": name, **(body or {})}, filename, lines,
                        ("derived", name))
        if rule.source not in signals:
            raise fail(filename, lines, ("derived", name, "from"),
                       f"unknown signal {rule.source!r}; use one of {sorted(signals)}")
        if name in signals:
            raise fail(filename, lines, ("derived", name), "already a signal; rename it")
        derived[name] = rule
    known = set(signals) | set(derived)
    patterns: dict[str, PatternRule] = {}
    for name, body in top.patterns.items():
        body = dict(body or {})
        when = body.get("when")
        if not isinstance(when, dict) or not when:
            raise fail(filename, lines, ("patterns", name, "when"),
                       "expected a mapping of signal -> condition (high, low, not_high, "
                       "not_low or a comparison such as '< 0.1')")
        conditions = []
        for signal, test in when.items():
            where = ("patterns", name, "when", signal)
            if signal not in known:
                raise fail(filename, lines, where,
                           f"unknown signal {signal!r}; use one of {sorted(known)}")
            test = str(test)
            if test not in RELATIVE:
                try:
                    parse_comparison(test)
                except ValueError as exc:
                    raise fail(filename, lines, where, f"{test!r} is not a condition ({exc}); "
                               "write high, low, not_high, not_low or a comparison such as "
                               "'< 0.1'") from exc
            conditions.append(Condition(signal=signal, test=test))
        body["when"] = tuple(conditions)
        patterns[name] = validate(PatternRule, {"name": name, **body}, filename, lines,
                                  ("patterns", name))
    defaults = validate(DetectionDefaults, top.defaults, filename, lines, ("defaults",))
    return DetectionRules(signals=signals, derived=derived, patterns=patterns, defaults=defaults)
