"""Fixed thresholds from ``rules/detection.yml``: the baseline the learned detectors must beat.

Called by ``fleet.FleetDetector`` (and used alone when a host's learned baseline is missing or
stale). A threshold fires once its comparison has held for ``for_s`` seconds, like a Prometheus
alerting rule's ``for:``.
"""

from __future__ import annotations

import numpy as np

from orchestrator.core.detect.rules import SignalRule, compare


class ThresholdClock:
    """Per host: since when each signal's threshold has held (NaN when it does not)."""

    def __init__(self, hosts: int) -> None:
        self.since: dict[str, np.ndarray] = {}
        self.hosts = hosts

    def step(self, rule: SignalRule, t: float, x: np.ndarray) -> np.ndarray:
        """Hosts whose threshold on ``rule`` has held for ``for_s`` at ``t``."""
        if rule.threshold is None:
            return np.zeros(self.hosts, dtype=bool)
        since = self.since.setdefault(rule.name, np.full(self.hosts, np.nan))
        holds = compare(rule.threshold, x)
        # a missing sample (NaN, or an infinity: no usable number) neither starts nor ends the
        # hold: the clock keeps what it had
        known = np.isfinite(x)
        since[:] = np.where(known, np.where(holds, np.where(np.isnan(since), t, since), np.nan),
                            since)
        return known & holds & (t - np.nan_to_num(since, nan=t) >= rule.for_s)
