"""Which remediation to try first for a fault, learned from how each one did before.

Called by ``core.plan.first_remediation`` (the engine and ``diagnose``) and by ``selfheal
incidents stats``. Each (fault, remediation) pair has a record of verified successes and
failures (rolled back, or escalated after it ran); its score is the mean of the Beta posterior
with a uniform prior, (successes + 1) / (runs + 2), so two lucky runs (0.75) do not beat fifty
runs with two failures (0.94), and an untried remediation starts at 0.5. Only the remediations
the fault rule lists are ranked, and equal scores keep the rule's order: nothing outside the
catalog is ever chosen. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Record:
    """How one remediation did for one fault: verified fixes and failed ones."""

    successes: int = 0
    failures: int = 0

    @property
    def runs(self) -> int:
        return self.successes + self.failures

    @property
    def score(self) -> float:
        """Mean of Beta(successes + 1, failures + 1)."""
        return (self.successes + 1) / (self.runs + 2)


Records = Mapping[tuple[str, str], Record]  # (fault, remediation) -> record


def rank(fault: str, candidates: Sequence[str], records: Records) -> tuple[str, ...]:
    """``candidates`` (the fault rule's order) best score first; ties keep the rule's order."""
    order = {name: i for i, name in enumerate(candidates)}
    return tuple(sorted(candidates, key=lambda name: (
        -records.get((fault, name), Record()).score, order[name])))
