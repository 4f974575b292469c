"""Comparisons the rules write as text (``"== 0"``, ``"> 0.9"``): one grammar, judged safely.

Called by ``core.faults`` (a signal's ``firing_when``) and ``core.detect.rules`` (a detection
threshold, a pattern's comparison clause) at load time, so a malformed comparison such as
``"== 1.2.3"`` is refused with the file and line instead of failing in the middle of a sweep.
A sample that is not a finite number (NaN, +Inf, -Inf: a division by zero in PromQL, a counter
reset) satisfies no comparison; the callers treat it as unknown, never as healthy.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass

OPERATORS: dict[str, Callable[[float, float], bool]] = {
    "==": operator.eq, "!=": operator.ne, ">": operator.gt,
    ">=": operator.ge, "<": operator.lt, "<=": operator.le,
}
_FORM = re.compile(r"^\s*(==|!=|>=|<=|>|<)\s*(\S+)\s*$")
_NUMBER = re.compile(r"^[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?$")
EXAMPLE = "write a comparison such as '== 0' or '> 0.9'"


@dataclass(frozen=True)
class Comparison:
    """``value <op> threshold``; ``holds`` is False for a value that is not a finite number."""

    op: str
    threshold: float

    def holds(self, value: float) -> bool:
        return math.isfinite(value) and OPERATORS[self.op](value, self.threshold)


def parse_comparison(text: str) -> Comparison:
    """``"> 0.9"`` -> Comparison; ValueError saying what is wrong with ``text`` and the fix."""
    match = _FORM.match(text)
    if match is None:
        raise ValueError(f"{text!r} is not a comparison; {EXAMPLE}")
    number = match.group(2)
    if not _NUMBER.match(number):
        raise ValueError(f"{text!r}: {number!r} is not a finite number; {EXAMPLE}")
    return Comparison(match.group(1), float(number))
