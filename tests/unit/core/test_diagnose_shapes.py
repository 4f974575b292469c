"""Diagnosis on fleets of any shape: where a signal applies, one incident per subject, the most
specific fault, and faults triggered by the learned detectors' opinions."""

from __future__ import annotations

from orchestrator.core.catalog import Catalog
from orchestrator.core.diagnose import diagnose
from orchestrator.core.faults import parse_faults
from orchestrator.core.signals import parse_signals
from orchestrator.models import Finding, Health

SIGNALS = parse_signals("""
signals:
  node_up: {promql: up, firing_when: "== 0"}
  disk_free: {promql: d, firing_when: "< 0.1", applies_to: exporters, subject: [mountpoint],
              harmful: down, exhaustion: true}
  pg_up: {promql: pg, firing_when: "== 0", applies_to: {groups: [db]}}
  rss: {promql: r, firing_when: "> 1e9", applies_to: exporters, subject: [unit]}
  deployed: {promql: b, firing_when: "> 1", applies_to: exporters, subject: [unit]}
""")
FAULTS = parse_faults("""
faults:
  disk_full:
    description: d
    when_firing: [disk_free]
    when_healthy: [node_up]
  disk_filling:
    description: forecast to fill
    when_detected: [{signal: disk_free, detector: forecast}]
    when_healthy: [node_up]
  pg_down:
    description: p
    when_firing: [pg_up]
  leak:
    description: l
    when_firing: [rss]
  leak_after_deploy:
    description: l2
    when_firing: [rss, deployed]
    supersedes: [leak]
""", Catalog(remediations={}), SIGNALS)


def f(host: str, signal: str, health: Health, absent: bool = False, **labels: str) -> Finding:
    return Finding(host=host, signal=signal, health=health, observed_at=1.0, labels=labels,
                   absent=absent)


def test_a_signal_a_host_neither_exports_nor_needs_leaves_it_healthy() -> None:
    findings = [f("plain", "node_up", Health.HEALTHY),
                f("plain", "disk_free", Health.UNKNOWN, absent=True),
                f("plain", "pg_up", Health.UNKNOWN, absent=True),
                f("db", "node_up", Health.HEALTHY),
                f("db", "pg_up", Health.UNKNOWN, absent=True)]
    verdicts = {v.host: v for v in diagnose(findings, FAULTS, ["plain", "db"],
                                            {"plain": (), "db": ("db",)})}
    assert verdicts["plain"].health is Health.HEALTHY
    assert verdicts["db"].health is Health.UNKNOWN  # its group requires pg_up
    assert "pg_up" in verdicts["db"].notes[-1]


def test_every_firing_subject_is_its_own_diagnosis() -> None:
    findings = [f("h", "node_up", Health.HEALTHY),
                f("h", "disk_free", Health.FIRING, mountpoint="/srv"),
                f("h", "disk_free", Health.FIRING, mountpoint="/var"),
                f("h", "disk_free", Health.HEALTHY, mountpoint="/")]
    (v,) = diagnose(findings, FAULTS, ["h"])
    assert sorted(d.subject for d in v.diagnoses) == ["mountpoint=/srv", "mountpoint=/var"]
    assert all(d.fault == "disk_full" for d in v.diagnoses)
    assert not v.cleared(FAULTS.faults["disk_full"], "mountpoint=/srv", FAULTS)
    healed = [*findings[:2], f("h", "disk_free", Health.HEALTHY, mountpoint="/var"), findings[3]]
    (after,) = diagnose(healed, FAULTS, ["h"])
    assert after.cleared(FAULTS.faults["disk_full"], "mountpoint=/var", FAULTS)
    assert not after.cleared(FAULTS.faults["disk_full"], "mountpoint=/srv", FAULTS)


def test_the_most_specific_fault_wins_on_the_same_subject_only() -> None:
    findings = [f("h", "rss", Health.FIRING, unit="a.service"),
                f("h", "rss", Health.FIRING, unit="b.service"),
                f("h", "deployed", Health.FIRING, unit="a.service"),
                f("h", "deployed", Health.HEALTHY, unit="b.service")]
    (v,) = diagnose(findings, FAULTS, ["h"])
    assert sorted((d.fault, d.subject) for d in v.diagnoses) == [
        ("leak", "unit=b.service"), ("leak_after_deploy", "unit=a.service")]


def test_a_fault_fires_on_a_detector_opinion_and_only_there() -> None:
    findings = [f("h1", "node_up", Health.HEALTHY), f("h2", "node_up", Health.HEALTHY),
                f("h1", "disk_free", Health.HEALTHY, mountpoint="/srv"),
                f("h2", "disk_free", Health.HEALTHY, mountpoint="/srv")]
    verdicts = {v.host: v for v in diagnose(findings, FAULTS, ["h1", "h2"],
                                            detected={("h1", "disk_free", "forecast"),
                                                      ("h2", "disk_free", "baseline")})}
    (d,) = verdicts["h1"].diagnoses
    assert d.fault == "disk_filling" and "forecast detector" in d.evidence[0]
    assert not verdicts["h2"].diagnoses  # another detector's opinion is not the trigger


def test_evidence_alone_is_not_a_broken_host_but_a_symptom_is() -> None:
    """"Too much broken" counts FIRING hosts: a signal that only backs up another (a release
    marker without a big service) must not count, or evidence left on three hosts holds the
    fix of a real fault on the fourth. A host that is down still counts."""
    assert FAULTS.evidence_only == {"deployed"}
    findings = [f("marked", "node_up", Health.HEALTHY),
                f("marked", "rss", Health.HEALTHY, unit="a.service"),
                f("marked", "deployed", Health.FIRING, unit="a.service"),
                f("down", "node_up", Health.FIRING),
                f("down", "rss", Health.HEALTHY, unit="a.service")]
    verdicts = {v.host: v for v in diagnose(findings, FAULTS, ["marked", "down"])}
    assert verdicts["marked"].health is Health.HEALTHY
    assert verdicts["marked"].signals["deployed"] is Health.FIRING  # still shown as it is
    assert "deployed firing, but only evidence" in verdicts["marked"].notes[-1]
    assert verdicts["down"].health is Health.FIRING
    assert "node_up" in verdicts["down"].notes[-1]


def test_the_shipped_evidence_signals_are_the_ones_that_back_up_another() -> None:
    from orchestrator.rules import load_rules
    from tests.conftest import ROLES_DIR, RULES_DIR

    faults = load_rules(RULES_DIR, ROLES_DIR).faults
    assert faults.evidence_only == {"db_idle_in_transaction", "disk_filling",
                                    "service_memory_growing"}
