"""Signals and fault rules (``rules/faults.yml``): what reveals each fault and what may fix it.

A *signal* is one PromQL expression evaluated once for the whole fleet; each returned series is a
host's sample, judged FIRING when ``firing_when`` holds. A *fault* fires on a host when all of its
``when_firing`` signals fire there and all of its ``when_healthy`` signals are healthy there.
Parsed from YAML text by ``parse_faults``; used by ``diagnose`` and ``sources.prometheus``.
"""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field, field_validator

from orchestrator.core.catalog import NAME, Catalog
from orchestrator.core.comparison import Comparison, parse_comparison
from orchestrator.core.rulefile import fail, load_with_lines, validate


class _Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Signal(_Rule):
    """One fleet-wide PromQL expression and when its value means trouble."""

    name: str = Field(pattern=NAME)
    promql: str = Field(min_length=1)
    firing_when: str
    description: str = ""

    @field_validator("firing_when")
    @classmethod
    def _condition(cls, v: str) -> str:
        parse_comparison(v)  # a malformed one is refused at load time, naming file and line
        return v

    @property
    def comparison(self) -> Comparison:
        return parse_comparison(self.firing_when)

    def fires(self, value: float) -> bool:
        """True when ``value`` meets ``firing_when``; never for NaN or an infinity (unknown)."""
        return self.comparison.holds(value)


class Fault(_Rule):
    """A named fault: the signals that reveal it and the remediations that may fix it."""

    name: str = Field(pattern=NAME)
    description: str
    when_firing: tuple[str, ...] = Field(min_length=1)
    when_healthy: tuple[str, ...] = ()
    remediations: tuple[str, ...] = ()


class FaultRules(_Rule):
    signals: Mapping[str, Signal]
    faults: Mapping[str, Fault]


class _File(_Rule):
    signals: dict[str, dict[str, object]]
    faults: dict[str, dict[str, object]]


def parse_faults(text: str, catalog: Catalog, filename: str = "faults.yml") -> FaultRules:
    """Parse and cross-check faults against signals and the catalog."""
    data, lines = load_with_lines(text, filename)
    top = validate(_File, data, filename, lines)
    signals = {
        name: validate(Signal, {"name": name, **body}, filename, lines, ("signals", name))
        for name, body in top.signals.items()
    }
    faults: dict[str, Fault] = {}
    for name, body in top.faults.items():
        path = ("faults", name)
        fault = validate(Fault, {"name": name, **body}, filename, lines, path)
        for key in ("when_firing", "when_healthy"):
            for sig in getattr(fault, key):
                if sig not in signals:
                    raise fail(filename, lines, (*path, key),
                               f"unknown signal '{sig}'; define it under signals: "
                               f"(known: {sorted(signals)})")
        for rem in fault.remediations:
            if catalog.get(rem) is None:
                raise fail(filename, lines, (*path, "remediations"),
                           f"'{rem}' is not in remediations.yml; add it to the catalog "
                           f"(known: {sorted(catalog.remediations)})")
        faults[name] = fault
    for entry in catalog.remediations.values():
        if entry.verify.signal not in signals:
            raise fail(filename, lines, ("signals",),
                       f"remediation '{entry.name}' verifies signal '{entry.verify.signal}', "
                       "which is not defined here; add it")
    return FaultRules(signals=signals, faults=faults)
