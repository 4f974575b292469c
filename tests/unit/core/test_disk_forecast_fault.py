"""The shipped fault that cleans a disk before it is full: ``disk_full_forecast``.

A detector trained the way ``selfheal baseline train`` trains it forecasts the host whose free
disk share declines steadily (``disk_available``, one series per host); the shipped fault rules
then clean the mount point that keeps filling there (``disk_filling``, one series per mount),
and only that one: no forecast, or no filling mount, means no action, and a disk already full
is ``disk_full``.
"""

from __future__ import annotations

from functools import cache

import numpy as np

from orchestrator.core.detect.fleet import train_detector
from orchestrator.core.diagnose import diagnose
from orchestrator.models import Finding, Health
from orchestrator.rules import load_detection, load_rules
from tests.conftest import ROLES_DIR, RULES_DIR

RULES = load_rules(RULES_DIR, ROLES_DIR)
DETECTION = load_detection(RULES_DIR)
HOSTS = ["filling", "steady"]
STEP_S = 60.0
NOW = 1_800_000_000.0


@cache
def opinions_after(history_h: float, filling_from: float, filling_to: float
                   ) -> frozenset[tuple[str, str, str]]:
    """Train on ``history_h`` hours where the filling host's free share falls linearly from
    ``filling_from`` to ``filling_to`` over the last 6 h (the steady one stays at 0.5), then judge
    one more point: every (host, signal, detector) opinion of that step."""
    times = np.arange(NOW - history_h * 3600, NOW, STEP_S)
    rng = np.random.default_rng(11)
    start = NOW - 6 * 3600
    share = np.clip((times - start) / (NOW - start), 0.0, 1.0)
    filling = filling_from + (filling_to - filling_from) * share + rng.normal(0, 0.002,
                                                                                len(times))
    steady = 0.5 + rng.normal(0, 0.002, len(times))
    detector = train_detector(DETECTION, HOSTS, times,
                              {"disk_available": np.column_stack([filling, steady])},
                              forest=False)
    step = float(filling_to + (filling_to - filling_from) * STEP_S / (6 * 3600))
    candidates = detector.step(NOW, {"disk_available": np.array([step, 0.5])})
    return frozenset((c.host, c.subject, c.detector) for c in candidates)


def finding(host: str, signal: str, health: Health, **labels: str) -> Finding:
    return Finding(host=host, signal=signal, health=health, observed_at=NOW, labels=labels)


def sweep_findings(srv_free: Health = Health.HEALTHY) -> list[Finding]:
    """Both hosts up; on each, /srv fills and / does not; ``srv_free``: is /srv already full."""
    out = []
    for host in HOSTS:
        out += [finding(host, "node_up", Health.HEALTHY),
                finding(host, "disk_free", Health.HEALTHY, mountpoint="/"),
                finding(host, "disk_free", srv_free, mountpoint="/srv"),
                finding(host, "disk_filling", Health.HEALTHY, mountpoint="/"),
                finding(host, "disk_filling", Health.FIRING, mountpoint="/srv")]
    return out


def test_a_steady_fill_is_forecast_and_cleans_the_filling_mount_there_only() -> None:
    opinions = opinions_after(8, 0.50, 0.25)  # about 4 %/h: zero in about 6 h, inside 24 h
    assert ("filling", "disk_available", "forecast") in opinions
    assert not any(host == "steady" and d == "forecast" for host, _, d in opinions)
    verdicts = {v.host: v for v in diagnose(sweep_findings(), RULES.faults, HOSTS,
                                            detected=opinions)}
    (early,) = verdicts["filling"].diagnoses
    assert (early.fault, early.subject) == ("disk_full_forecast", "mountpoint=/srv")
    assert early.remediations == ("disk_cleanup",)
    assert "forecast detector: disk_available anomalous" in early.evidence
    assert verdicts["steady"].diagnoses == ()  # /srv fills there too, but nothing is near
    # a filling mount with no forecast is evidence, not a broken host
    assert verdicts["steady"].health is Health.HEALTHY


def test_the_plan_cleans_the_mount_point_the_forecast_fault_names() -> None:
    opinions = opinions_after(8, 0.50, 0.25)
    (verdict,) = [v for v in diagnose(sweep_findings(), RULES.faults, HOSTS,
                                      detected=opinions) if v.host == "filling"]
    entry = RULES.catalog.remediations["disk_cleanup"]
    (early,) = verdict.diagnoses
    assert entry.params["disk_cleanup_mountpoint"].from_label == "mountpoint"
    assert early.labels["mountpoint"] == "/srv"


def test_without_a_forecast_a_filling_mount_alone_is_left_alone() -> None:
    opinions = opinions_after(8, 0.50, 0.49)  # flat: nothing to forecast
    assert not any(d == "forecast" for _, _, d in opinions)
    assert all(v.diagnoses == () for v in diagnose(sweep_findings(), RULES.faults, HOSTS,
                                                   detected=opinions))


def test_a_full_disk_supersedes_the_forecast() -> None:
    opinions = opinions_after(8, 0.50, 0.25)
    verdicts = {v.host: v for v in diagnose(sweep_findings(Health.FIRING), RULES.faults,
                                            HOSTS, detected=opinions)}
    assert [(d.fault, d.subject) for d in verdicts["filling"].diagnoses] == [
        ("disk_full", "mountpoint=/srv")]
