"""Guardrails: tiers, cooldowns, blast radius, circuit breaker, maintenance, concurrency."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from orchestrator.core.policy import MaintenanceWindow, PastRun, Policy, PolicyState, decide
from orchestrator.models import Plan, Verdict

NOW = datetime(2026, 11, 29, 3, 0, tzinfo=UTC).timestamp()  # a Sunday, 03:00 UTC


def plan(host: str = "vps1", tier: int = 1, cooldown: float = 300) -> Plan:
    return Plan("service_crash", "service_restart", "service_restart", (host,), {}, tier,
                cooldown, False, "service_up")


def state(history: tuple[PastRun, ...] = (), running: int = 0, firing: int = 1,
          fleet: int = 10, pending: tuple[PastRun, ...] = ()) -> PolicyState:
    return PolicyState(NOW, fleet, firing, running, history, pending)


def test_tier_1_runs() -> None:
    assert decide(plan(), Policy(), state()).verdict is Verdict.RUN


def test_tiers_need_approval_by_mode() -> None:
    assert decide(plan(tier=2), Policy(mode="strict"), state()).verdict is Verdict.ASK
    assert decide(plan(tier=2), Policy(mode="relaxed"), state()).verdict is Verdict.RUN
    assert decide(plan(tier=3), Policy(mode="relaxed"), state()).verdict is Verdict.ASK


def test_disabled_mode_never_runs() -> None:
    d = decide(plan(), Policy(mode="disabled"), state())
    assert d.verdict is Verdict.REFUSE and "disabled" in d.reasons[0]


def test_cooldown_refuses_a_repeat_on_the_same_host() -> None:
    recent = (PastRun("vps1", "service_restart", NOW - 60, False),)
    d = decide(plan(), Policy(), state(recent))
    assert d.verdict is Verdict.REFUSE and "cooldown" in " ".join(d.reasons)
    assert decide(plan("vps2"), Policy(), state(recent)).verdict is Verdict.RUN
    old = (PastRun("vps1", "service_restart", NOW - 600, False),)
    assert decide(plan(), Policy(), state(old)).verdict is Verdict.RUN


def test_too_much_of_the_fleet_broken_stops_everything() -> None:
    d = decide(plan(), Policy(), state(firing=6, fleet=10))
    assert d.verdict is Verdict.REFUSE and "page a human" in d.reasons[0]


def test_blast_radius_counts_distinct_hosts_in_window() -> None:
    history = tuple(PastRun(f"h{i}", "service_restart", NOW - 30, False) for i in range(5))
    d = decide(plan("vps9"), Policy(), state(history))
    assert d.verdict is Verdict.REFUSE and "blast radius" in " ".join(d.reasons)


def test_circuit_breaker_opens_after_failures() -> None:
    history = tuple(PastRun(f"h{i}", "service_restart", NOW - 4000 + i, True) for i in range(2))
    history += (PastRun("h9", "service_restart", NOW - 100, True),) * 3
    policy = Policy.model_validate({"blast_radius": {"max_hosts": 50}})
    d = decide(plan("vps9"), policy, state(history))
    assert d.verdict is Verdict.REFUSE and "circuit breaker" in " ".join(d.reasons)


def test_maintenance_window_suppresses() -> None:
    window = MaintenanceWindow.model_validate(
        {"name": "patching", "hosts": ["vps*"], "days": ["sun"], "start": "02:00", "end": "04:00"})
    d = decide(plan(), Policy(maintenance_windows=(window,)), state())
    assert d.verdict is Verdict.SUPPRESS
    outside = MaintenanceWindow.model_validate(
        {"name": "p", "hosts": ["vps*"], "days": ["mon"], "start": "02:00", "end": "04:00"})
    assert decide(plan(), Policy(maintenance_windows=(outside,)), state()).verdict is Verdict.RUN


def test_window_across_midnight() -> None:
    window = MaintenanceWindow.model_validate(
        {"name": "night", "hosts": ["*"], "start": "22:00", "end": "04:00"})
    assert window.covers("x", NOW)


def test_concurrency_defers_instead_of_refusing() -> None:
    assert decide(plan(), Policy(max_concurrent=2), state(running=2)).verdict is Verdict.DEFER


def test_dry_run_verdict() -> None:
    assert decide(plan(), Policy(), state(), dry_run=True).verdict is Verdict.DRY_RUN


def test_plans_admitted_earlier_in_the_sweep_count_for_blast_radius() -> None:
    policy = Policy.model_validate({"blast_radius": {"max_hosts": 1}})
    pending = (PastRun("vps1", "service_restart", NOW, False),)
    d = decide(plan("vps2"), policy, state(pending=pending))
    assert d.verdict is Verdict.REFUSE and "blast radius" in " ".join(d.reasons)
    same_host = decide(plan("vps1"), Policy(), state(pending=pending))
    assert "cooldown" in " ".join(same_host.reasons)


def test_approval_skips_only_the_approval_step() -> None:
    assert decide(plan(tier=3), Policy(), state(), approved=True).verdict is Verdict.RUN
    d = decide(plan(tier=3), Policy(mode="disabled"), state(), approved=True)
    assert d.verdict is Verdict.REFUSE


def test_unknown_hosts_count_as_broken() -> None:
    d = decide(plan(), Policy(), state(firing=8, fleet=10))
    assert "broken or unknown" in d.reasons[0]


@pytest.mark.parametrize("value", ["2:00", "24:00", "02:00+01:00", 120])
def test_maintenance_times_must_be_quoted_hh_mm(value: object) -> None:
    from orchestrator.core.policy import parse_policy
    from orchestrator.errors import RulesError

    text = ("maintenance_windows:\n  - name: w\n    hosts: ['*']\n"
            f"    start: {value if isinstance(value, int) else repr(value)}\n    end: '04:00'\n")
    with pytest.raises(RulesError, match=r'policy.yml:4: .*start: .*quoted "HH:MM"'):
        parse_policy(text, "policy.yml")
    unquoted = text.replace("'04:00'", "4:00").replace(
        f"start: {value if isinstance(value, int) else repr(value)}", "start: '02:00'")
    with pytest.raises(RulesError, match=r"policy.yml:5"):
        parse_policy(unquoted, "policy.yml")
