"""Which remediation first: the Beta posterior's mean, the rule's order on ties, never another."""

from __future__ import annotations

from orchestrator.core.catalog import Catalog
from orchestrator.core.learning import Record, rank
from orchestrator.core.plan import first_remediation
from orchestrator.models import Diagnosis


def test_two_lucky_runs_do_not_beat_fifty_good_ones() -> None:
    records = {("disk_full", "lucky"): Record(2, 0), ("disk_full", "steady"): Record(48, 2)}
    assert Record(2, 0).score == 0.75 and round(Record(48, 2).score, 3) == 0.942
    assert rank("disk_full", ("lucky", "steady"), records) == ("steady", "lucky")


def test_untried_is_a_coin_and_ties_keep_the_rules_order() -> None:
    records = {("f", "bad"): Record(1, 3)}
    assert rank("f", ("bad", "new_a", "new_b"), records) == ("new_a", "new_b", "bad")
    assert rank("f", ("a", "b"), {}) == ("a", "b")
    # a record for another fault says nothing about this one
    assert rank("g", ("bad", "x"), records) == ("bad", "x")


def test_only_the_faults_own_remediations_are_ever_chosen(rules) -> None:  # type: ignore[no-untyped-def]
    catalog: Catalog = rules.catalog
    name = next(iter(catalog.remediations))
    d = Diagnosis("h1", "service_crash", 1.0, (), (name,))
    better_elsewhere = {("service_crash", "not_in_the_rule"): Record(100, 0),
                        ("service_crash", name): Record(0, 10)}
    entry = first_remediation(d, catalog, better_elsewhere)
    assert entry is not None and entry.name == name
