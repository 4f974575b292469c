"""Multi-metric patterns from ``rules/detection.yml``, vectorised over hosts.

Called by ``fleet.FleetDetector`` each sweep with the latest value and the baseline surprise ``z``
of every signal; a condition is relative to the host's own baseline (``high``: z >= pattern_z) or
a fixed comparison. ``for_points`` persistence is kept by the caller.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from orchestrator.core.detect.rules import PatternRule, compare


def pattern_holds(pattern: PatternRule, values: Mapping[str, np.ndarray],
                  z: Mapping[str, np.ndarray], pattern_z: float,
                  seasonal: Mapping[str, np.ndarray] | None = None) -> np.ndarray:
    """Per host: does every condition of ``pattern`` hold now? Missing data never matches.

    ``seasonal`` marks values within what the same hour of earlier days or weeks looked like;
    such a value is not ``high`` or ``low`` (a weekly batch job is not a DDoS).
    """
    result: np.ndarray | None = None
    for cond in pattern.when:
        x = np.asarray(values[cond.signal], dtype=float)
        known = np.isfinite(x)  # NaN or an infinity: no usable sample
        if cond.relative:
            zz = np.asarray(z[cond.signal], dtype=float)
            if seasonal is not None and cond.test in ("high", "low"):
                zz = np.where(seasonal[cond.signal], 0.0, zz)
            holds = {
                "high": zz >= pattern_z, "low": zz <= -pattern_z,
                "not_high": zz < pattern_z, "not_low": zz > -pattern_z,
            }[cond.test] & known
        else:
            holds = compare(cond.test, x)
        result = holds if result is None else result & holds
    assert result is not None  # the parser refuses a pattern without conditions
    return result
