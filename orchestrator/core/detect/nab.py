"""NAB (Numenta Anomaly Benchmark) scoring, reimplemented as pure functions.

Called by ``benchmarks/detection.py`` to score the detectors on the NAB tuning subset, and by the
unit tests against a hand-computed example. Follows NAB's ``sweeper.py``: the first 15 % of a file
(at most 750 rows) is probationary and not scored; inside a window only the earliest detection
counts, weighted by a scaled sigmoid of its position (the window's first row earns the full
true-positive weight); a window without a detection costs the false-negative weight; a detection
outside every window costs the false-positive weight, less when it comes just after a window.
The total over a set of files is normalised to ``100 * (S - S_null) / (S_perfect - S_null)``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Profile:
    """A NAB cost profile: the weight of a true positive, a false positive, a missed window."""

    name: str
    tp: float
    fp: float
    fn: float


PROFILES: tuple[Profile, ...] = (
    Profile("standard", 1.0, 0.11, 1.0),
    Profile("reward_low_FP_rate", 1.0, 0.22, 1.0),
    Profile("reward_low_FN_rate", 1.0, 0.11, 2.0),
)


@dataclass(frozen=True)
class FileScore:
    """One file's raw NAB score under one profile, with its counts."""

    score: float
    windows: int  # windows that are scored (not wholly probationary)
    detected: int
    false_positives: int

    @property
    def missed(self) -> int:
        return self.windows - self.detected


def scaled_sigmoid(position: float) -> float:
    """NAB's reward for a detection at ``position`` (-1 window start, 0 window end, >0 after)."""
    if position >= 3.0:
        return -1.0
    return 2.0 / (1.0 + math.exp(5.0 * position)) - 1.0


def probation_length(rows: int) -> int:
    """Rows at the start of a file that NAB does not score."""
    return int(min(math.floor(0.15 * rows), 0.15 * 5000))


def window_rows(timestamps: Sequence[float] | np.ndarray,
                windows: Iterable[tuple[float, float]]) -> list[tuple[int, int]]:
    """Map ``[start, end]`` times (inclusive) to first/last row indices; empty windows dropped."""
    ts = np.asarray(timestamps, dtype=float)
    rows: list[tuple[int, int]] = []
    for start, end in windows:
        first = int(np.searchsorted(ts, start, side="left"))
        last = int(np.searchsorted(ts, end, side="right")) - 1
        if first <= last:
            rows.append((first, last))
    return sorted(rows)


def score_file(detections: Sequence[bool] | np.ndarray, windows: Sequence[tuple[int, int]],
               profile: Profile) -> FileScore:
    """Score one file's binary detections against its windows (row indices, inclusive)."""
    flags = np.asarray(detections, dtype=bool)
    n = len(flags)
    probation = probation_length(n)
    max_tp = scaled_sigmoid(-1.0)
    best: dict[int, float] = {}
    for w, (_, last) in enumerate(windows):
        if last >= probation:
            best[w] = -profile.fn
    firsts = np.array([w[0] for w in windows], dtype=np.int64)
    lasts = np.array([w[1] for w in windows], dtype=np.int64)
    fp_total = 0.0
    false_positives = 0
    # Only flagged rows matter; windows are sorted and disjoint, so the window that may hold row
    # i is the last one starting at or before it, and the one before i is the last ending before.
    for i in np.nonzero(flags)[0]:
        if i < probation:
            continue
        k = int(np.searchsorted(firsts, i, side="right")) - 1
        if k >= 0 and i <= lasts[k]:
            first, last = windows[k]
            width = float(last - first + 1)
            reward = scaled_sigmoid(-(last - i + 1) / width) * profile.tp / max_tp
            best[k] = max(best[k], reward)
            continue
        before = int(np.searchsorted(lasts, i, side="left")) - 1
        if before < 0:
            position = 3.0
        else:
            pf, pl = windows[before]
            width = float(pl - pf + 1)
            position = abs(pl - i) / (width - 1) if width > 1 else 3.0
        fp_total += scaled_sigmoid(position) * profile.fp
        false_positives += 1
    detected = sum(1 for w, v in best.items() if v > -profile.fn)
    return FileScore(score=fp_total + sum(best.values()), windows=len(best), detected=detected,
                     false_positives=false_positives)


def normalised(scores: Iterable[FileScore], profile: Profile) -> float:
    """NAB's normalised score over a set of files: 0 flags nothing, 100 is perfect."""
    scores = list(scores)
    total = sum(s.score for s in scores)
    windows = sum(s.windows for s in scores)
    null = -profile.fn * windows
    perfect = profile.tp * windows
    if perfect == null:
        return 100.0 if total >= 0 else 0.0
    return 100.0 * (total - null) / (perfect - null)
