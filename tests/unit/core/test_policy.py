"""Guardrails: tiers, cooldowns, blast radius, circuit breaker, maintenance, concurrency."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from orchestrator.core.policy import (
    Flapping,
    MaintenanceWindow,
    PastRun,
    Policy,
    PolicyState,
    decide,
    parse_policy,
)
from orchestrator.models import Plan, Verdict
from tests.conftest import RULES_DIR

NOW = datetime(2026, 11, 29, 3, 0, tzinfo=UTC).timestamp()  # a Sunday, 03:00 UTC


def plan(host: str = "vps1", tier: int = 1, cooldown: float = 300, subject: str = "",
         params: dict[str, str] | None = None) -> Plan:
    return Plan("service_crash", "service_restart", "service_restart", (host,), params or {},
                tier, cooldown, False, "service_up", subject=subject)


def state(history: tuple[PastRun, ...] = (), running: int = 0, firing: int = 1,
          fleet: int = 10, pending: tuple[PastRun, ...] = (), unknown: int = 0) -> PolicyState:
    return PolicyState(NOW, fleet, firing, running, history, pending, unknown_hosts=unknown)


def test_tier_1_runs() -> None:
    assert decide(plan(), Policy(), state()).verdict is Verdict.RUN


def test_tiers_need_approval_by_mode() -> None:
    assert decide(plan(tier=2), Policy(mode="strict"), state()).verdict is Verdict.ASK
    assert decide(plan(tier=2), Policy(mode="relaxed"), state()).verdict is Verdict.RUN
    assert decide(plan(tier=3), Policy(mode="relaxed"), state()).verdict is Verdict.ASK


def test_disabled_mode_never_runs_and_holds() -> None:
    d = decide(plan(), Policy(mode="disabled"), state())
    assert d.verdict is Verdict.HOLD and "disabled" in d.reasons[0]


def test_cooldown_holds_a_repeat_on_the_same_host() -> None:
    recent = (PastRun("vps1", "service_restart", NOW - 60, False),)
    d = decide(plan(), Policy(), state(recent))
    assert d.verdict is Verdict.HOLD and "cooldown" in " ".join(d.reasons)
    assert decide(plan("vps2"), Policy(), state(recent)).verdict is Verdict.RUN
    old = (PastRun("vps1", "service_restart", NOW - 600, False),)
    assert decide(plan(), Policy(), state(old)).verdict is Verdict.RUN


def test_too_much_of_the_fleet_broken_stops_everything() -> None:
    d = decide(plan(), Policy(), state(firing=6, fleet=10))
    assert d.verdict is Verdict.HOLD and "page a human" in d.reasons[0]


def test_blast_radius_counts_distinct_hosts_in_window() -> None:
    history = tuple(PastRun(f"h{i}", "service_restart", NOW - 30, False) for i in range(5))
    d = decide(plan("vps9"), Policy(), state(history))
    assert d.verdict is Verdict.HOLD and "blast radius" in " ".join(d.reasons)


def test_circuit_breaker_opens_after_failures() -> None:
    history = tuple(PastRun(f"h{i}", "service_restart", NOW - 4000 + i, True) for i in range(2))
    history += (PastRun("h9", "service_restart", NOW - 100, True),) * 3
    policy = Policy.model_validate({"blast_radius": {"max_hosts": 50}})
    d = decide(plan("vps9"), policy, state(history))
    assert d.verdict is Verdict.HOLD and "circuit breaker" in " ".join(d.reasons)


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
    assert d.verdict is Verdict.HOLD and "blast radius" in " ".join(d.reasons)
    same_host = decide(plan("vps1"), Policy(), state(pending=pending))
    assert "cooldown" in " ".join(same_host.reasons)


def test_approval_skips_only_the_approval_step() -> None:
    assert decide(plan(tier=3), Policy(), state(), approved=True).verdict is Verdict.RUN
    d = decide(plan(tier=3), Policy(mode="disabled"), state(), approved=True)
    assert d.verdict is Verdict.HOLD


def test_too_many_broken_hosts_hold() -> None:
    d = decide(plan(), Policy(), state(firing=8, fleet=10))
    assert d.verdict is Verdict.HOLD and "8 of 10 hosts are broken" in d.reasons[0]


def test_unknown_hosts_are_counted_apart_with_their_own_limit() -> None:
    # 4 broken + 4 unknown of 10: neither count is over its 50 % limit
    assert decide(plan(), Policy(), state(firing=4, unknown=4)).verdict is Verdict.RUN
    d = decide(plan(), Policy(), state(firing=1, unknown=6))
    assert d.verdict is Verdict.HOLD and "6 of 10 hosts are unknown" in d.reasons[0]
    tight = Policy.model_validate({"blast_radius": {"max_unknown_fraction": 0.2}})
    assert decide(plan(), tight, state(firing=1, unknown=3)).verdict is Verdict.HOLD


def test_cooldown_is_per_subject_so_two_units_on_one_host_both_heal() -> None:
    ran = (PastRun("vps1", "service_restart", NOW - 10, False, "unit=a.service"),)
    other = plan(subject="unit=b.service")
    assert decide(other, Policy(), state(history=ran)).verdict is Verdict.RUN
    same = plan(subject="unit=a.service")
    assert decide(same, Policy(), state(history=ran)).verdict is Verdict.HOLD


def test_a_unit_off_the_restart_allow_list_is_refused_and_says_how_to_allow_it() -> None:
    policy = Policy.model_validate({"restart_units": ["nginx.service", "postgresql*"]})
    ok = plan(params={"service_restart_unit": "postgresql@15-main.service"})
    assert decide(ok, policy, state()).verdict is Verdict.RUN
    d = decide(plan(params={"service_restart_unit": "cron.service"}), policy, state())
    assert d.verdict is Verdict.REFUSE and "restart_units" in d.reasons[0]
    d = decide(plan(params={"runaway_process_unit": "cron.service"}), policy, state())
    assert d.verdict is Verdict.REFUSE
    # protected units stay refused even when the allow-list would match them
    d = decide(plan(params={"service_restart_unit": "sshd.service"}), Policy(), state())
    assert d.verdict is Verdict.REFUSE and "protected" in d.reasons[0]


@pytest.mark.parametrize("value", ["2:00", "24:00", "02:00+01:00", 120])
def test_maintenance_times_must_be_quoted_hh_mm(value: object) -> None:
    from orchestrator.errors import RulesError

    text = ("maintenance_windows:\n  - name: w\n    hosts: ['*']\n"
            f"    start: {value if isinstance(value, int) else repr(value)}\n    end: '04:00'\n")
    with pytest.raises(RulesError, match=r'policy.yml:4: .*start: .*quoted "HH:MM"'):
        parse_policy(text, "policy.yml")
    unquoted = text.replace("'04:00'", "4:00").replace(
        f"start: {value if isinstance(value, int) else repr(value)}", "start: '02:00'")
    with pytest.raises(RulesError, match=r"policy.yml:5"):
        parse_policy(unquoted, "policy.yml")


def test_flapping_backs_off_exponentially_then_escalates() -> None:
    policy = Policy()  # cooldown 300 s, backoff 2 over 3600 s, max_returns 3 in 86400 s
    one = (PastRun("vps1", "service_restart", NOW - 400, False),)
    assert decide(plan(), policy, state(one)).verdict is Verdict.RUN  # 400 s > 300 s
    two = (PastRun("vps1", "service_restart", NOW - 1000, False),
           PastRun("vps1", "service_restart", NOW - 400, False))
    d = decide(plan(), policy, state(two))  # second return: cooldown doubled to 600 s
    assert d.verdict is Verdict.HOLD and "cooldown is 600s" in d.reasons[0]
    assert "backed off" in d.reasons[0]
    later = (two[0], PastRun("vps1", "service_restart", NOW - 700, False))
    assert decide(plan(), policy, state(later)).verdict is Verdict.RUN
    three = (*two, PastRun("vps1", "service_restart", NOW - 2000, False))
    d = decide(plan(), policy, state(three))
    assert d.verdict is Verdict.REFUSE and "flapping" in d.reasons[0]
    old = tuple(PastRun("vps1", "service_restart", NOW - 86_500 - i, False) for i in range(5))
    assert decide(plan(), policy, state(old)).verdict is Verdict.RUN  # outside the window


def test_a_fault_back_three_times_in_a_day_is_recurring_whatever_the_spacing() -> None:
    # three fixes 20 h, 10 h and 2 h ago: each outside the back-off window, all in one day
    runs = tuple(PastRun("vps1", "service_restart", NOW - h * 3600, False) for h in (20, 10, 2))
    d = decide(plan(), Policy(), state(runs))
    assert d.verdict is Verdict.REFUSE
    assert d.reasons[0].startswith("recurring (flapping): service_restart ran 3 times on vps1 "
                                   "in the last 86400s (runs 72000s, 36000s, 7200s ago)")
    # the window is a setting: counted over 12 h, only two of them are returns
    half_day = Policy(flapping=Flapping(recurring_window_s=12 * 3600))
    assert decide(plan(), half_day, state(runs)).verdict is Verdict.RUN
    shipped = parse_policy((RULES_DIR / "policy.yml").read_text(), "policy.yml")
    assert shipped.flapping.recurring_window_s == 86_400


def test_a_recurring_subject_is_named_with_its_run_history() -> None:
    unit = "unit=nginx.service"
    runs = tuple(PastRun("vps1", "service_restart", NOW - age, False, unit)
                 for age in (2000, 1000, 400))
    d = decide(plan(subject=unit), Policy(), state(runs))
    assert d.verdict is Verdict.REFUSE
    assert d.reasons[0].startswith("recurring (flapping): service_restart ran 3 times on vps1 "
                                   "(unit=nginx.service) in the last 86400s (runs 2000s, 1000s, "
                                   "400s ago)")
    # another unit's runs on the same host are another record
    assert decide(plan(subject="unit=cron.service"), Policy(), state(runs)).verdict is (
        Verdict.RUN)


@pytest.mark.parametrize("unit", ["sshd.service", "ssh", "dbus.service", "systemd-journald",
                                  "prometheus-node-exporter.service", "selfheal-sweep.service",
                                  "prometheus-postgres-exporter.service", "user@0.service"])
def test_protected_units_are_refused_whatever_the_labels_say(unit: str) -> None:
    p = Plan("service_crash", "service_restart", "service_restart", ("vps1",),
             {"service_restart_unit": unit}, 1, 300, False, "service_up")
    d = decide(p, Policy(), state())
    assert d.verdict is Verdict.REFUSE
    assert "protected_units" in d.reasons[0] and unit in d.reasons[0]
    forced = decide(p, Policy(), state(), approved=True, manual=True)
    assert forced.verdict is Verdict.REFUSE  # approval or a human's hand does not lift it


def test_ordinary_units_are_not_protected() -> None:
    for unit in ("nginx.service", "selfheal-demo.service", "postgresql@15-main.service"):
        p = Plan("service_crash", "service_restart", "service_restart", ("vps1",),
                 {"service_restart_unit": unit,
                  "service_restart_health_url": "http://10.0.0.1:8080/healthz"},
                 1, 300, False,
                 "service_up")
        assert decide(p, Policy(), state()).verdict is Verdict.RUN, unit


def test_protected_units_come_from_policy_yml() -> None:

    policy = parse_policy("protected_units: ['nginx*']\n")
    p = Plan("service_crash", "service_restart", "service_restart", ("vps1",),
             {"service_restart_unit": "nginx.service"}, 1, 300, False, "service_up")
    assert decide(p, policy, state()).verdict is Verdict.REFUSE
    assert policy.protected_unit("sshd.service") is None  # the file's list replaces defaults


def test_manual_runs_skip_fleet_limits_but_not_cooldown() -> None:
    assert decide(plan(), Policy(), state(firing=8, fleet=10), manual=True).verdict is Verdict.RUN
    recent = (PastRun("vps1", "service_restart", NOW - 60, False),)
    assert decide(plan(), Policy(), state(recent), manual=True).verdict is Verdict.HOLD
