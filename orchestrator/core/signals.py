"""The one signal catalog (``rules/signals.yml``): what selfheal watches, for rules and detectors.

A *signal* is one PromQL expression evaluated once for the whole fleet; each returned series is a
host's sample (through its ``instance`` label). The same entry serves both consumers:

* fault rules (``faults.yml``) judge a series FIRING when ``firing_when`` holds;
* the detectors (``detection.yml``) watch signals that name a ``harmful`` direction, with
  ``firing_when`` held ``for_s`` seconds as their fixed threshold, and forecast the
  ``exhaustion: true`` ones.

``applies_to`` says which hosts must have the signal: ``all`` (every inventory host; a host
without a fresh series is UNKNOWN), ``exporters`` (only hosts that export it; a host without it
is simply not concerned) or ``{groups: [db, ...]}`` (hosts of those inventory groups must have it;
others are not concerned). ``subject`` names the labels that tell one host's series apart (a
unit, a mount point): each firing subject is its own incident. Pure: ``parse_signals`` takes the
YAML text; errors name the file, the line and the fix.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from orchestrator.core.comparison import Comparison, parse_comparison
from orchestrator.core.rulefile import fail, load_with_lines, validate

NAME = r"^[a-z][a-z0-9_]{0,62}$"
LABEL = r"^[a-zA-Z_][a-zA-Z0-9_]{0,63}$"


class _Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Groups(_Rule):
    """Hosts of these inventory groups must export the signal."""

    groups: tuple[str, ...] = Field(min_length=1)


class Signal(_Rule):
    """One fleet-wide PromQL expression: when it means trouble, and where it applies."""

    name: str = Field(pattern=NAME)
    promql: str = Field(min_length=1)
    description: str = ""
    firing_when: str | None = None
    for_s: float = Field(0.0, ge=0, description="detectors: how long firing_when must hold")
    harmful: Literal["up", "down"] | None = None
    exhaustion: bool = False
    applies_to: Literal["all", "exporters"] | Groups = "all"
    subject: tuple[str, ...] = ()

    @field_validator("firing_when")
    @classmethod
    def _condition(cls, v: str | None) -> str | None:
        if v is not None:
            parse_comparison(v)  # a malformed one is refused at load time, naming file and line
        return v

    @field_validator("subject")
    @classmethod
    def _labels(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for label in v:
            if not re.match(LABEL, label):
                raise ValueError(f"{label!r} is not a Prometheus label name")
        return v

    @property
    def comparison(self) -> Comparison | None:
        return parse_comparison(self.firing_when) if self.firing_when else None

    def fires(self, value: float) -> bool:
        """True when ``value`` meets ``firing_when``; never for NaN or an infinity (unknown)."""
        comparison = self.comparison
        return comparison is not None and comparison.holds(value)

    def required_on(self, groups: Iterable[str]) -> bool:
        """Whether a host of ``groups`` must export this signal (missing there = unknown)."""
        if self.applies_to == "all":
            return True
        if isinstance(self.applies_to, Groups):
            return bool(set(self.applies_to.groups) & set(groups))
        return False

    def subject_of(self, labels: Mapping[str, str]) -> str:
        """The series' subject as ``label=value`` pairs ("" for a host-wide signal)."""
        return ",".join(f"{k}={labels.get(k, '')}" for k in self.subject)


class _File(_Rule):
    signals: dict[str, dict[str, Any]] = Field(min_length=1)


def parse_signals(text: str, filename: str = "signals.yml") -> Mapping[str, Signal]:
    """Parse the signal catalog; a signal fault rules use needs ``firing_when`` (checked by
    ``faults.parse_faults``), one detectors watch needs ``harmful``."""
    data, lines = load_with_lines(text, filename)
    if not isinstance(data, dict):
        raise fail(filename, lines, (), "expected a mapping with `signals:`")
    top = validate(_File, data, filename, lines)
    signals: dict[str, Signal] = {}
    for name, body in top.signals.items():
        if not isinstance(body, dict):
            raise fail(filename, lines, ("signals", name),
                       "expected a mapping with promql and firing_when or harmful")
        signal = validate(Signal, {"name": name, **body}, filename, lines, ("signals", name))
        if signal.firing_when is None and signal.harmful is None:
            raise fail(filename, lines, ("signals", name),
                       "give firing_when (for fault rules) or harmful: up|down (for the "
                       "detectors), or both")
        if signal.exhaustion and signal.harmful != "down":
            raise fail(filename, lines, ("signals", name, "exhaustion"),
                       "exhaustion forecasts a 0..1 'available' signal running out: it needs "
                       "harmful: down")
        signals[name] = signal
    return signals
