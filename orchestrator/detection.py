"""The sweep's detection stage: learned anomaly findings for the whole fleet, from Prometheus.

Called by the engine (one ``AnomalyWatch`` per controller, ``observe(now)`` once per sweep) and by
``selfheal baseline status`` (``describe_baseline``, ``load_detection_rules``). Each ``observe``
runs one instant query per signal of ``rules/detection.yml`` for the whole fleet, feeds the
newest values to ``orchestrator.core.detect.FleetDetector`` and merges the candidates with
``combine`` into FIRING findings.

The trained model comes from ``<state.dir>/baselines`` (``selfheal baseline train``): it is loaded
once and reloaded when its file changes. When it is missing, stale, unreadable or trained on other
signals, only the fixed thresholds run (``AnomalyReport.fallback``) and ``model_status`` says why
and how to fix it.

The streaming state (baselines updated since training, confirmation counters, the combiner's
``last_raised``, the last step's opinions that fault rules with ``when_detected`` fire on) is
saved to ``<state.dir>/detect-state.pkl`` after every observe and restored on start, so one-shot
sweeps from cron continue where the previous process stopped. A state older
than ``max_state_age_s`` (15 min), for another host set or for another model is discarded, with a
note. Pickles are read only from the controller's own state dir, owned by this user and not
writable by others. The detector takes at most one point per training step (``step_s``), so
point counts mean the same time whatever ``sweep --every`` is. scikit-learn is imported only when
a model with a forest is unpickled.
"""

from __future__ import annotations

import copy
import logging
import os
import pickle
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from orchestrator.config import Settings
from orchestrator.core.detect import DetectionRules, FleetDetector, combine
from orchestrator.models import Finding
from orchestrator.rules import load_detection, load_signals
from orchestrator.sources.prometheus import QueryFn, instance_host
from orchestrator.store.baselines import (
    BaselineHealth,
    BaselineStatus,
    load_baseline,
    trusted,
)

log = logging.getLogger(__name__)

BASELINE_NAME = "fleet"
STATE_FILE = "detect-state.pkl"
STATE_FORMAT = 1
MAX_STATE_AGE_S = 900.0
DEFAULT_STEP_S = 60.0
TRAIN_HINT = "run `selfheal baseline train` (daily: docs/systemd/selfheal-baseline.timer)"


@dataclass(frozen=True)
class AnomalyReport:
    """One sweep's anomaly findings and how much to trust them.

    ``unknown_hosts``: hosts without a sample for at least one signal (``unknown`` lists the
    pairs); such a signal is neither healthy nor broken for that host. ``notes`` says what
    happened to the model and the saved state (reloaded, restored, discarded, point skipped).
    """

    findings: tuple[Finding, ...]
    model_status: str
    fallback: bool
    unknown_hosts: tuple[str, ...]
    unknown: tuple[tuple[str, str], ...] = ()
    refused: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    # every detector opinion of the step judged (or of the last one, when this observe took no
    # point): (host, signal, detector), what fault rules with when_detected fire on
    opinions: frozenset[tuple[str, str, str]] = frozenset()


def baseline_dir(settings: Settings) -> Path:
    return settings.state.dir / "baselines"


def load_detection_rules(settings: Settings) -> DetectionRules:
    """``rules/detection.yml`` over ``signals.yml`` from ``settings.rules.dir``; a RulesError
    names the file and the fix."""
    return load_detection(settings.rules.dir)


def _utc(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%MZ", time.gmtime(ts))


def describe_baseline(status: BaselineStatus, directory: Path, now: float) -> str:
    """One line on the baseline model for humans: what is loaded, or why thresholds only."""
    meta = status.metadata
    if status.health is BaselineHealth.OK:
        window = meta.get("window", {})
        return (f"baselines trained {_utc(float(meta['trained_at']))} over "
                f"{float(window.get('days', 0)):g} d, fresh "
                f"({(now - float(meta['trained_at'])) / 3600:.1f} h old)")
    if status.health is BaselineHealth.MISSING:
        return f"no baseline model under {directory}: thresholds only; {TRAIN_HINT}"
    if status.health is BaselineHealth.STALE:
        return (f"baseline model under {directory} is stale (trained "
                f"{_utc(float(meta['trained_at']))}): thresholds only; {TRAIN_HINT}")
    return f"{status.message.split(';')[0]}: thresholds only; {TRAIN_HINT}"


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


class AnomalyWatch:
    """The detection stage for one host set; ``observe(now)`` once per sweep."""

    def __init__(self, settings: Settings, query: QueryFn, hosts_by_address: Mapping[str, str],
                 clock: Callable[[], float] = time.time,
                 max_state_age_s: float = MAX_STATE_AGE_S,
                 groups: Mapping[str, tuple[str, ...]] | None = None) -> None:
        self.settings = settings
        # which hosts must have each signal (signals.yml applies_to): a missing sample elsewhere
        # is "not exported here", not unknown
        catalog = load_signals(settings.rules.dir)  # read once, for this and the rules below
        self.required = {
            name: {h for h in set(hosts_by_address.values())
                   if catalog[name].required_on((groups or {}).get(h, ()))}
            for name in catalog}
        self.query = query
        self.hosts_by_address = dict(hosts_by_address)
        self.clock = clock
        self.max_state_age_s = max_state_age_s
        self.rules = load_detection(settings.rules.dir, catalog)
        self.hosts = tuple(sorted(set(self.hosts_by_address.values())))
        address_of: dict[str, str] = {}
        for address, host in sorted(self.hosts_by_address.items()):
            address_of.setdefault(host, address)
        self.address_of = address_of
        self.directory = baseline_dir(settings)
        self.state_path = settings.state.dir / STATE_FILE
        self.model: FleetDetector | None = None
        self.model_meta: dict[str, Any] = {}
        self.model_status = ""
        self.model_stamp: tuple[tuple[int, int] | None, tuple[int, int] | None] = (None, None)
        self.last_raised: dict[tuple[str, str], float] = {}
        # every detector opinion of the last step, undeduplicated: (host, signal, detector);
        # fault rules with when_detected fire on these while the condition lasts
        self.opinions: frozenset[tuple[str, str, str]] = frozenset()
        self.notes: list[str] = []
        now = clock()
        self._load_model(now)
        self.detector = self._fresh_detector()
        self._restore(now)

    # -- the model -----------------------------------------------------------------------------
    @property
    def fallback(self) -> bool:
        return self.model is None

    @property
    def trained_at(self) -> float | None:
        return float(self.model_meta["trained_at"]) if self.model is not None else None

    def _paths(self) -> tuple[Path, Path]:
        return (self.directory / f"{BASELINE_NAME}.pkl",
                self.directory / f"{BASELINE_NAME}.json")

    def _load_model(self, now: float) -> None:
        pkl, meta = self._paths()
        self.model_stamp = (_stamp(pkl), _stamp(meta))
        self.model, self.model_meta = None, {}
        max_age = self.rules.defaults.baseline_max_age_s
        distrust = trusted(pkl) if pkl.is_file() else None
        if distrust is not None:
            self.model_status = f"{distrust}: not loaded; thresholds only; {TRAIN_HINT}"
            return
        model, status = load_baseline(self.directory, BASELINE_NAME, now=now, max_age_s=max_age)
        self.model_status = describe_baseline(status, self.directory, now)
        if model is None:
            return
        if not isinstance(model, FleetDetector):
            self.model_status = (f"{pkl} is not a selfheal detector ({type(model).__name__}): "
                                 f"thresholds only; {TRAIN_HINT}")
        elif model.rules.all_signals != self.rules.all_signals:
            self.model_status = (f"the baseline model under {self.directory} was trained on other "
                                 "signals than rules/detection.yml lists now: thresholds only; "
                                 f"{TRAIN_HINT}")
        else:
            self.model, self.model_meta = model, status.metadata
            log.info("baseline loaded", extra={"status": self.model_status})

    def _fresh_detector(self) -> FleetDetector:
        """The detector from the model (for this host set), or thresholds only."""
        if self.model is None:
            return FleetDetector(self.rules, self.hosts, detectors=("thresholds",),
                                 step_s=DEFAULT_STEP_S)
        source = [self.address_of[h] for h in self.hosts]
        new = [h for h, a in zip(self.hosts, source, strict=True) if a not in self.model.hosts]
        if new:
            self.notes.append(f"{len(new)} host(s) not in the baseline model learn from scratch "
                              f"(no learned findings for {self.model.params.warmup_points} "
                              f"points): {', '.join(new[:5])}")
        return self.model.reindexed(self.hosts, source, self.rules)

    def _check_model(self, now: float) -> None:
        """Reload when the file changed; fall back when the loaded model has gone stale."""
        pkl, meta = self._paths()
        if (_stamp(pkl), _stamp(meta)) != self.model_stamp:
            self._load_model(now)
            self.notes.append(f"baseline model changed on disk; now: {self.model_status}")
            self.detector = self._fresh_detector()
            return
        trained = self.trained_at
        max_age = self.rules.defaults.baseline_max_age_s
        if trained is not None and now - trained > max_age:
            self.model, self.model_meta = None, {}
            self.model_status = (f"baseline model under {self.directory} went stale (trained "
                                 f"{_utc(trained)}, older than {max_age / 3600:g} h): thresholds "
                                 f"only; {TRAIN_HINT}")
            self.detector = self._fresh_detector()
        elif trained is not None:
            self.model_status = describe_baseline(
                BaselineStatus(BaselineHealth.OK, "", self.model_meta), self.directory, now)

    # -- saved streaming state -----------------------------------------------------------------
    def _restore(self, now: float) -> None:
        path = self.state_path
        if not path.is_file():
            return
        try:
            distrust = trusted(path)
            if distrust is not None:
                self.notes.append(f"{distrust}: detection state not restored; delete it")
                return
            saved = pickle.loads(path.read_bytes())  # our own state dir, checked above
            if not isinstance(saved, dict) or saved.get("format") != STATE_FORMAT:
                raise ValueError("not a selfheal detection state")
            age = now - float(saved["saved_at"])
            raised = saved["last_raised"]
            detector = saved["detector"]
            opinions = frozenset((str(h), str(s), str(d))
                                 for h, s, d in saved.get("opinions", ()))
        except Exception as exc:  # unpickling can raise nearly anything
            self.notes.append(f"{path}: unreadable detection state ({type(exc).__name__}); "
                              "starting from the baseline model")
            return
        self.last_raised = {k: float(v) for k, v in raised.items() if k[0] in self.hosts}
        why = None
        if age > self.max_state_age_s:
            why = (f"is {age / 60:.0f} min old (limit {self.max_state_age_s / 60:g} min)")
        elif tuple(saved.get("hosts", ())) != self.hosts:
            why = "was for another host set"
        elif saved.get("trained_at") != self.trained_at:
            why = "was built on another baseline model"
        elif not isinstance(detector, FleetDetector) \
                or detector.rules.all_signals != self.rules.all_signals:
            why = "was built for other signals"
        if why is not None:
            self.notes.append(f"detection state {why}: discarded, starting from the "
                              + ("baseline model" if self.model is not None else "thresholds"))
            return
        detector.forest = self.model.forest if self.model is not None else None
        detector.detectors = self.detector.detectors
        self.detector = detector.reindexed(self.hosts, rules=self.rules)
        # the last step's opinions: a one-shot sweep's rules fire on them as a service's do
        self.opinions = frozenset(o for o in opinions if o[0] in self.hosts)
        self.notes.append(f"detection state restored ({age:.0f} s old)")

    def _save(self, now: float) -> None:
        det = self.detector
        forest, det.forest = det.forest, None  # the forest lives in the model file
        try:
            blob = pickle.dumps({"format": STATE_FORMAT, "saved_at": now, "hosts": self.hosts,
                                 "trained_at": self.trained_at, "detector": det,
                                 "last_raised": self.last_raised,
                                 "opinions": sorted(self.opinions)},
                                protocol=pickle.HIGHEST_PROTOCOL)
        finally:
            det.forest = forest
        tmp = self.state_path.with_suffix(".pkl.tmp")
        try:
            self.state_path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(blob)
            tmp.replace(self.state_path)
        except OSError as exc:
            self.notes.append(f"cannot save detection state to {self.state_path} ({exc}); the "
                              "next one-shot sweep starts from the baseline model; make "
                              "state.dir writable")

    # -- one sweep -----------------------------------------------------------------------------
    def _values(self) -> tuple[dict[str, np.ndarray], list[str]]:
        """Signal -> newest value per host (NaN = no sample): one query per signal."""
        label = self.settings.prometheus.instance_label
        column = {h: i for i, h in enumerate(self.hosts)}
        refused: list[str] = []
        values: dict[str, np.ndarray] = {}
        for name, rule in self.rules.signals.items():
            x = np.full(len(self.hosts), np.nan)
            for series in self.query(rule.promql):
                instance = str(series.get("metric", {}).get(label, ""))
                address = instance_host(instance)
                if address is None:
                    refused.append(f"{name}: refused series with {label}={instance[:80]!r} "
                                   "(not a host[:port])")
                    continue
                host = self.hosts_by_address.get(address)
                if host is None:
                    continue
                try:
                    v = float(series["value"][1])
                except (KeyError, IndexError, TypeError, ValueError):
                    continue
                if not np.isfinite(v):  # +Inf/NaN from a division in PromQL: no sample
                    continue
                i = column[host]
                x[i] = v if np.isnan(x[i]) else x[i] + v  # several series (mounts): summed
            values[name] = x
        return values, refused

    def observe(self, now: float, persist: bool = True) -> AnomalyReport:
        """Query the fleet, judge the newest point and return the findings.

        ``persist=False`` (``selfheal diagnose``) judges on a copy: the detector state, the
        de-duplication memory and the state file stay as they were.
        Raises ``SourceUnavailable`` when Prometheus does not answer (the state is unchanged).
        """
        self._check_model(now)
        values, refused = self._values()
        unknown = tuple((h, s) for s, x in values.items()
                        for h in np.asarray(self.hosts)[np.isnan(x)].tolist()
                        if h in self.required.get(s, self.hosts))
        unknown_hosts = tuple(sorted({h for h, _ in unknown}))
        det = self.detector
        findings: tuple[Finding, ...] = ()
        opinions = self.opinions
        if not self.hosts:
            self.notes.append("no hosts to watch")
        elif det.last_t is not None and now - det.last_t < 0.9 * det.step_s:
            self.notes.append(f"last point {now - det.last_t:.0f} s ago; the detector takes one "
                              f"point per {det.step_s:g} s")
        else:
            candidates = (det if persist else copy.deepcopy(det)).step(now, values)
            findings, raised = combine(candidates, self.rules.defaults.combiner,
                                       self.last_raised)
            opinions = frozenset((c.host, c.subject, c.detector) for c in candidates)
            if persist:
                self.last_raised = raised
                self.opinions = opinions
                self._save(now)
        notes, self.notes = tuple(self.notes), []
        return AnomalyReport(findings=findings, model_status=self.model_status,
                             fallback=self.fallback, unknown_hosts=unknown_hosts,
                             unknown=tuple(sorted(unknown)), refused=tuple(refused), notes=notes,
                             opinions=opinions)
