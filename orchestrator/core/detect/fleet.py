"""Score the whole fleet for one new point per host and signal: the detection stage of a sweep.

Called by the engine once per sweep (``FleetDetector.step`` with the newest value of every signal
for every host, as arrays over hosts), by ``baseline train`` (a replay of the history window) and
by ``benchmarks/detection.py``. All state is numpy arrays over hosts, so a sweep of 10,000 hosts
costs the same number of numpy calls as one host. Detectors:

``thresholds``  fixed thresholds (the baseline to beat; the fallback when a model is missing)
``baseline``    the dynamic seasonal baseline of ``stream``, confirmed over ``confirm_points``
                sweeps, in the signal's harmful direction, outside the seasonal envelope
``forecast``    time to exhaustion of the ``exhaustion: true`` signals within the horizon
``patterns``    the multi-metric patterns of ``rules/detection.yml``
``iforest``     an IsolationForest over the vector of baseline surprises (needs a trained model)

Units: every count ``*_points`` (``confirm_points``, a pattern's ``for_points``, the baseline's
``warmup_points``, ``settle_points``, ``quiet_points``, ``memory_points``) counts *points*, one
sample per series at the detector's step ``step_s`` (60 s by default; ``baseline train --step``).
The sweep feeds at most one point per step whatever ``sweep --every`` is
(``orchestrator.detection``), so 10 confirmation points are 10 minutes; ``detect-csv`` and the
NAB benchmark count rows, as NAB does. Times that are in seconds say so (``for_s``, ``window_s``,
``dedup_s``).

``train_detector`` replays a history window (stored incident windows and what the detector itself
flags left out) and fits the forest;
``reindexed`` carries a trained detector over to another host list (new hosts start fresh).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields

import numpy as np

from orchestrator.core.detect.combiner import Candidate, combine
from orchestrator.core.detect.forecast import exhaustion_score, time_to_exhaustion
from orchestrator.core.detect.iforest import ForestModel, features, fit_forest
from orchestrator.core.detect.patterns import pattern_holds
from orchestrator.core.detect.rules import DetectionDefaults, DetectionRules
from orchestrator.core.detect.stream import BaselineParams, BaselineState
from orchestrator.core.detect.thresholds import ThresholdClock

DETECTORS = ("thresholds", "baseline", "forecast", "patterns", "iforest")
LEARNED = ("baseline", "forecast", "patterns", "iforest")
FILL_RATE_S = 1800.0  # derived fill rates look back this far
MASK_PAD_S = 3600.0  # a fault starts before it is flagged and settles after; training pads so


@dataclass
class _Ring:
    """The last ``size`` samples of one signal for every host (for trends and fill rates)."""

    hosts: int
    size: int
    times: np.ndarray = field(init=False)
    values: np.ndarray = field(init=False)
    filled: int = 0

    def __post_init__(self) -> None:
        self.times = np.full(self.size, np.nan)
        self.values = np.full((self.hosts, self.size), np.nan)

    def push(self, t: float, x: np.ndarray) -> None:
        i = self.filled % self.size
        self.times[i] = t
        self.values[:, i] = x
        self.filled += 1

    def ordered(self) -> tuple[np.ndarray, np.ndarray]:
        if self.filled <= self.size:
            return self.times[: self.filled], self.values[:, : self.filled]
        i = self.filled % self.size
        order = np.r_[i:self.size, 0:i]
        return self.times[order], self.values[:, order]

    def back(self, seconds: float, now: float) -> np.ndarray | None:
        """Values at the newest sample at least ``seconds`` old, or None."""
        old = np.nonzero(self.times <= now - seconds)[0]
        if not len(old):
            return None
        return self.values[:, old[np.argmax(self.times[old])]]


class FleetDetector:
    """Detection state for a fixed list of hosts; one ``step`` per sweep."""

    def __init__(self, rules: DetectionRules, hosts: Sequence[str],
                 params: BaselineParams | None = None,
                 detectors: Iterable[str] = DETECTORS, step_s: float = 60.0) -> None:
        self.rules = rules
        self.hosts = tuple(hosts)
        self.detectors = tuple(detectors)
        unknown = set(self.detectors) - set(DETECTORS)
        if unknown:
            raise ValueError(f"unknown detectors {sorted(unknown)}; use {DETECTORS}")
        n = len(self.hosts)
        self.params = params or rules.defaults.baseline_params()
        self.signals = rules.all_signals
        self.baselines = {s: BaselineState.new(n, self.params) for s in self.signals}
        self.clock = ThresholdClock(n)
        self.runs = {s: np.zeros(n, dtype=np.int64) for s in self.signals}
        self.pattern_runs = {p: np.zeros(n, dtype=np.int64) for p in rules.patterns}
        self.forest_runs = np.zeros(n, dtype=np.int64)
        window = int(rules.defaults.forecast.window_s // step_s) + 2
        rate_window = int(FILL_RATE_S // step_s) + 2
        self.rings = {s: _Ring(n, window) for s, r in rules.signals.items() if r.exhaustion}
        for d in rules.derived.values():
            self.rings.setdefault(d.source, _Ring(n, rate_window))
        self.step_s = step_s
        self.forest: ForestModel | None = None
        self.last_t: float | None = None
        self.derive_last: dict[str, np.ndarray] = {}
        self.self_masked: tuple[tuple[str, float, float], ...] = ()

    @property
    def defaults(self) -> DetectionDefaults:
        return self.rules.defaults

    def derive(self, t: float, values: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The queried signals plus the derived ones (fill rates); updates the rings."""
        n = len(self.hosts)
        out = {s: np.asarray(values.get(s, np.full(n, np.nan)), dtype=float)
               for s in self.rules.signals}
        for s, ring in self.rings.items():
            ring.push(t, out[s])
        for name, d in self.rules.derived.items():
            old = self.rings[d.source].back(FILL_RATE_S, t)
            if old is None:
                out[name] = np.full(n, np.nan)
            else:
                out[name] = (old - out[d.source]) * 3600.0 / FILL_RATE_S
        return out

    def step(self, t: float, values: Mapping[str, np.ndarray],
             collect: list[np.ndarray] | None = None,
             learn: np.ndarray | None = None) -> list[Candidate]:
        """Judge the newest values (signal -> array over hosts, NaN = missing) at ``t``.

        ``collect`` (training) receives this sweep's forest feature rows (hosts x features).
        ``learn`` (bool per host, training) marks the hosts whose points the baselines may learn
        from; see ``BaselineState.step``.
        """
        self.last_t = t
        d = self.defaults
        vals = self.derive(t, values)
        self.derive_last = vals
        out: list[Candidate] = []
        z: dict[str, np.ndarray] = {}
        seasonal: dict[str, np.ndarray] = {}
        harmful: list[np.ndarray] = []
        minutes = d.confirm_points * self.step_s / 60.0
        for s in self.signals:
            step = self.baselines[s].step(t, vals[s], learn)
            z[s] = step.z
            seasonal[s] = step.seasonal
            hz = step.z if self.rules.harmful(s) == "up" else -step.z
            harmful.append(hz)
            bad = (hz >= self.params.min_surprise) & ~step.seasonal
            self.runs[s] = np.where(bad, self.runs[s] + 1, 0)
            if "baseline" in self.detectors:
                for i in np.nonzero(self.runs[s] >= d.confirm_points)[0]:
                    score = float(min(0.95, 0.5 + 0.02 * (hz[i] - self.params.min_surprise)))
                    out.append(Candidate(self.hosts[i], s, "baseline", t, score, float(vals[s][i]),
                                         f"{s}={vals[s][i]:.4g} is {hz[i]:.1f} scales from its "
                                         f"learned normal for this hour, for "
                                         f"{int(self.runs[s][i])} points (needs "
                                         f"{d.confirm_points}, {minutes:g} min)"))
        if "thresholds" in self.detectors:
            for s, rule in self.rules.signals.items():
                for i in np.nonzero(self.clock.step(rule, t, vals[s]))[0]:
                    out.append(Candidate(self.hosts[i], s, "thresholds", t, 0.9,
                                         float(vals[s][i]), f"{s}={vals[s][i]:.4g} "
                                         f"{rule.threshold} for {rule.for_s:g}s"))
        if "forecast" in self.detectors:
            for s, ring in self.rings.items():
                if not self.rules.signals[s].exhaustion:
                    continue
                times, window = ring.ordered()
                tte = time_to_exhaustion(times, window, t, d.forecast)
                urgency = exhaustion_score(tte, d.forecast.horizon_s)
                for i in np.nonzero(urgency > 0)[0]:
                    out.append(Candidate(self.hosts[i], s, "forecast", t, float(urgency[i]),
                                         float(vals[s][i]), f"{s} runs out in "
                                         f"{tte[i] / 3600:.1f} h at the trend of the last "
                                         f"{d.forecast.window_s / 3600:g} h"))
        if "patterns" in self.detectors:
            for name, pattern in self.rules.patterns.items():
                holds = pattern_holds(pattern, vals, z, d.pattern_z, seasonal)
                self.pattern_runs[name] = np.where(holds, self.pattern_runs[name] + 1, 0)
                for i in np.nonzero(self.pattern_runs[name] >= pattern.for_points)[0]:
                    shown = ", ".join(f"{c.signal}={vals[c.signal][i]:.3g}" for c in pattern.when)
                    out.append(Candidate(self.hosts[i], name, "patterns", t, 0.8, None,
                                         f"{pattern.description} ({shown})"))
        if "iforest" in self.detectors or collect is not None:
            rows = features(np.column_stack(harmful),
                            np.column_stack([seasonal[s] for s in self.signals]), t)
            if collect is not None:
                collect.append(rows)
            if self.forest is not None and "iforest" in self.detectors:
                out.extend(self.forest_candidates(t, rows, self.forest.score(rows), vals))
        return out

    def forest_candidates(self, t: float, rows: np.ndarray, score: np.ndarray,
                          values: Mapping[str, np.ndarray]) -> list[Candidate]:
        """Candidates from forest scores of one sweep's rows (scored here or in a batch)."""
        out: list[Candidate] = []
        self.forest_runs = np.where(score > 0.5, self.forest_runs + 1, 0)
        for i in np.nonzero(self.forest_runs >= self.defaults.confirm_points)[0]:
            top = np.argsort(-np.abs(rows[i, : len(self.signals)]))[:3]
            subject = self.signals[int(top[0])]
            shown = ", ".join(f"{self.signals[j]} {rows[i, j]:+.1f}" for j in top)
            out.append(Candidate(self.hosts[i], subject, "iforest", t, float(score[i]),
                                 float(values[subject][i]), "isolated among this group's normal "
                                 f"vectors (surprise in scales: {shown})"))
        return out

    def reindexed(self, hosts: Sequence[str], source: Sequence[str | None] | None = None,
                  rules: DetectionRules | None = None) -> FleetDetector:
        """A copy for ``hosts`` whose host ``i`` carries the state of ``source[i]`` (a host of
        this detector; default the same name). Hosts without a source start fresh (warm-up).

        ``rules`` (same signals, e.g. edited thresholds or patterns) replaces this detector's.
        """
        if rules is not None and rules.all_signals != self.rules.all_signals:
            raise ValueError("rules with other signals need a newly trained detector")
        sources = list(hosts) if source is None else list(source)
        if len(sources) != len(hosts):
            raise ValueError("source must name one host (or None) per host")
        where = {h: i for i, h in enumerate(self.hosts)}
        index = np.array([where.get(h, -1) if h is not None else -1 for h in sources],
                         dtype=np.int64)
        out = FleetDetector(rules or self.rules, hosts, self.params, self.detectors, self.step_s)
        have = index >= 0
        src = index[have]

        def carry(new: np.ndarray, old: np.ndarray) -> None:
            new[have] = old[src]

        for s, state in self.baselines.items():
            if s not in out.baselines:
                continue
            fresh = out.baselines[s]
            for f in fields(state):
                old = getattr(state, f.name)
                if f.name == "bins_at":
                    fresh.bins_at = old.copy()
                elif f.name == "visit":
                    fresh.visit[:, have] = old[:, src]
                elif isinstance(old, np.ndarray):
                    carry(getattr(fresh, f.name), old)
        for name, since in self.clock.since.items():
            out.clock.since[name] = np.full(len(hosts), np.nan)
            carry(out.clock.since[name], since)
        for counters, new_counters in ((self.runs, out.runs),
                                       (self.pattern_runs, out.pattern_runs)):
            for key, arr in counters.items():
                if key in new_counters:
                    carry(new_counters[key], arr)
        carry(out.forest_runs, self.forest_runs)
        for s, ring in self.rings.items():
            if s in out.rings and out.rings[s].size == ring.size:
                new_ring = out.rings[s]
                new_ring.times = ring.times.copy()
                new_ring.filled = ring.filled
                carry(new_ring.values, ring.values)
        out.forest = self.forest
        out.last_t = self.last_t
        return out


def train_detector(rules: DetectionRules, hosts: Sequence[str], times: np.ndarray,
                   values: Mapping[str, np.ndarray], clean: np.ndarray | None = None,
                   step_s: float = 60.0, forest: bool = True,
                   progress: Callable[[int], None] | None = None,
                   self_mask: bool = True) -> FleetDetector:
    """Replay a history window (signal -> rows x hosts, NaN = missing) into a trained detector.

    ``clean`` (rows x hosts, bool) marks the points outside stored incident windows; the others
    are treated as missing. With ``self_mask`` the window is first replayed once with the
    learned detectors as the sweep runs them, and what they flag (``flagged_mask``) is left out
    of the second, learning replay too: a fault nobody stored as an incident is not learned as
    normal. Points left out so still mark their hour in the seasonal envelopes, so a recurring
    job seen once in the window (a weekly batch) is recognised when it comes round again; the
    price is that the same excursion on the same host at the same hour of the week a week later
    is discounted too. The windows left out are kept in ``self_masked`` (host, start, end).
    The forest (``forest=True``) is fitted on the rows after the baseline's warm-up of hosts
    that had data and were not left out. ``progress(done)`` is called after every replayed row
    with the rows replayed so far (``replays(self_mask) * len(times)`` in all). scikit-learn is
    imported only for the forest.
    """
    times = np.asarray(times, dtype=float)
    n = len(hosts)
    flagged = np.zeros((len(times), n), dtype=bool)
    windows: tuple[tuple[str, float, float], ...] = ()
    if self_mask:
        flagged, windows = flagged_mask(rules, hosts, times, values, clean, step_s, progress)
    offset = len(times) if self_mask else 0
    fd = FleetDetector(rules, hosts, detectors=(), step_s=step_s)
    rows: list[np.ndarray] = []
    ids: list[np.ndarray] = []
    for r, t in enumerate(times):
        ok = np.ones(n, dtype=bool) if clean is None else np.asarray(clean[r], dtype=bool)
        vals = {s: np.where(ok, np.asarray(v[r], dtype=float), np.nan)
                for s, v in values.items()}
        seen = ok & np.any([~np.isnan(v) for v in vals.values()], axis=0) if vals else ok
        learn = ~flagged[r]
        collect: list[np.ndarray] = []
        fd.step(float(t), vals, collect=collect if forest else None, learn=learn)
        use = seen & learn
        if forest and r >= fd.params.warmup_points and use.any():
            rows.append(collect[0][use])
            ids.append(np.nonzero(use)[0])
        if progress is not None:
            progress(offset + r + 1)
    if rows:
        fd.forest = fit_forest(np.vstack(rows), rules.defaults.isolation_forest,
                               series=np.concatenate(ids), confirm=rules.defaults.confirm_points)
    fd.detectors = LEARNED if fd.forest is not None else tuple(
        d for d in LEARNED if d != "iforest")
    fd.self_masked = windows
    return fd


def replays(self_mask: bool = True) -> int:
    """How many times ``train_detector`` replays the window (for progress bars)."""
    return 2 if self_mask else 1


def flagged_mask(rules: DetectionRules, hosts: Sequence[str], times: np.ndarray,
                 values: Mapping[str, np.ndarray], clean: np.ndarray | None = None,
                 step_s: float = 60.0, progress: Callable[[int], None] | None = None,
                 ) -> tuple[np.ndarray, tuple[tuple[str, float, float], ...]]:
    """What the learned detectors (no forest yet) flag when the window is replayed as sweeps.

    Returns (rows x hosts, True where left out) and the windows (host, start, end): from
    ``confirm_points`` steps before a flagged sweep (the fault began before it was confirmed)
    minus ``MASK_PAD_S``, to the flagged sweep plus ``MASK_PAD_S``, as ``baseline train`` pads
    stored incidents. A flagged sweep is one where the combiner's confidence for some subject
    of the host reaches ``min_confidence`` (the findings the sweep would raise, before dedup).
    """
    times = np.asarray(times, dtype=float)
    n = len(hosts)
    judge = FleetDetector(rules, hosts, detectors=tuple(d for d in LEARNED if d != "iforest"),
                          step_s=step_s)
    params = rules.defaults.combiner.model_copy(update={"dedup_s": 0.0})
    column = {h: i for i, h in enumerate(judge.hosts)}
    hit: dict[int, list[float]] = {}
    for r, t in enumerate(times):
        ok = np.ones(n, dtype=bool) if clean is None else np.asarray(clean[r], dtype=bool)
        vals = {s: np.where(ok, np.asarray(v[r], dtype=float), np.nan)
                for s, v in values.items()}
        found, _ = combine(judge.step(float(t), vals), params)
        for f in found:
            hit.setdefault(column[f.host], []).append(float(t))
        if progress is not None:
            progress(r + 1)
    before = rules.defaults.confirm_points * step_s + MASK_PAD_S
    mask = np.zeros((len(times), n), dtype=bool)
    windows: list[tuple[str, float, float]] = []
    for i, stamps in sorted(hit.items()):
        start, end = stamps[0] - before, stamps[0] + MASK_PAD_S
        for t in [*stamps[1:], np.inf]:
            if t - before <= end:
                end = t + MASK_PAD_S
                continue
            mask[(times >= start) & (times <= end), i] = True
            windows.append((judge.hosts[i], start, end))
            start, end = t - before, t + MASK_PAD_S
    return mask, tuple(windows)
