"""Fault rules (``rules/faults.yml``): what reveals each fault and what may fix it.

A fault fires on a host when all of its ``when_firing`` signals (from the signal catalog,
``core.signals``) fire there, every ``when_detected`` detector finding is present there, and all
of its ``when_healthy`` signals are known to be healthy there. A fault whose lead signal has a
``subject`` (a unit, a mount point) fires once per firing subject. ``supersedes`` names less
specific faults that the same symptom also matches (a leak after a deploy supersedes a plain
leak): when both fire on one host and subject, only this one is diagnosed. Parsed from YAML text
by ``parse_faults``; used by ``diagnose`` and the engine.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from orchestrator.core.catalog import NAME, Catalog
from orchestrator.core.rulefile import fail, load_with_lines, validate
from orchestrator.core.signals import Signal


class _Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Detected(_Rule):
    """A learned detector's finding that triggers a fault (e.g. a disk forecast to fill)."""

    signal: str
    detector: Literal["thresholds", "baseline", "forecast", "patterns", "iforest"]


class Fault(_Rule):
    """A named fault: the signals that reveal it and the remediations that may fix it."""

    name: str = Field(pattern=NAME)
    description: str
    when_firing: tuple[str, ...] = ()
    when_detected: tuple[Detected, ...] = ()
    when_healthy: tuple[str, ...] = ()
    supersedes: tuple[str, ...] = ()
    remediations: tuple[str, ...] = ()
    prevention: str = ""  # how to stop it happening again, for the root-cause report

    @property
    def lead(self) -> str:
        """The signal whose series (and subject) the fault is about."""
        return self.when_firing[0] if self.when_firing else self.when_detected[0].signal


class FaultRules(_Rule):
    signals: Mapping[str, Signal]
    faults: Mapping[str, Fault]

    @property
    def used_signals(self) -> tuple[str, ...]:
        """The signals fault rules judge: the ones a sweep queries for them."""
        used = {s for f in self.faults.values() for s in (*f.when_firing, *f.when_healthy)}
        return tuple(s for s in self.signals if s in used)

    @property
    def evidence_only(self) -> frozenset[str]:
        """Signals that say nothing wrong on their own: a fault's second and later
        ``when_firing`` signals (idle sessions without a full pool) and the lead of a fault that
        also needs a detector's finding (a growing service with no exhaustion forecast). A host
        where only these fire is not broken; everything else firing is a symptom."""
        alone = {s for f in self.faults.values() for s in f.when_healthy}
        alone |= {f.when_firing[0] for f in self.faults.values()
                  if f.when_firing and not f.when_detected}
        return frozenset(s for s in self.used_signals if s not in alone)


class _File(_Rule):
    faults: dict[str, dict[str, Any]] = Field(min_length=1)


def parse_faults(text: str, catalog: Catalog, signals: Mapping[str, Signal],
                 filename: str = "faults.yml") -> FaultRules:
    """Parse and cross-check faults against the signal catalog and the remediation catalog."""
    data, lines = load_with_lines(text, filename)
    if isinstance(data, dict) and "signals" in data:
        raise fail(filename, lines, ("signals",), "signals live in signals.yml now (one catalog "
                   "for rules and detectors); move them there")
    top = validate(_File, data, filename, lines)
    faults: dict[str, Fault] = {}
    for name, body in top.faults.items():
        path = ("faults", name)
        fault = validate(Fault, {"name": name, **body}, filename, lines, path)
        if not fault.when_firing and not fault.when_detected:
            raise fail(filename, lines, path, "give when_firing (signals) or when_detected "
                       "(detector findings), or both")
        for key in ("when_firing", "when_healthy"):
            for sig in getattr(fault, key):
                if sig not in signals:
                    raise fail(filename, lines, (*path, key),
                               f"unknown signal '{sig}'; define it in signals.yml "
                               f"(known: {sorted(signals)})")
                if signals[sig].firing_when is None:
                    raise fail(filename, lines, (*path, key),
                               f"signal '{sig}' has no firing_when in signals.yml; a fault "
                               "rule needs one")
        for found in fault.when_detected:
            known = signals.get(found.signal)
            if known is None or known.harmful is None:
                raise fail(filename, lines, (*path, "when_detected"),
                           f"'{found.signal}' is not a signal the detectors watch (one with "
                           "harmful: in signals.yml)")
        for rem in fault.remediations:
            if catalog.get(rem) is None:
                raise fail(filename, lines, (*path, "remediations"),
                           f"'{rem}' is not in remediations.yml; add it to the catalog "
                           f"(known: {sorted(catalog.remediations)})")
        faults[name] = fault
    for name, fault in faults.items():
        for other in fault.supersedes:
            if other not in faults or other == name:
                raise fail(filename, lines, ("faults", name, "supersedes"),
                           f"'{other}' is not another fault of this file")
    for entry in catalog.remediations.values():
        verify = signals.get(entry.verify.signal)
        if verify is None or verify.firing_when is None:
            raise fail(filename, lines, ("faults",),
                       f"remediation '{entry.name}' verifies signal '{entry.verify.signal}', "
                       "which signals.yml does not define with a firing_when; add it")
    return FaultRules(signals=signals, faults=faults)
