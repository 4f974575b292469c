"""Guardrails (``rules/policy.yml``): decide whether a plan runs, waits for a human, or is refused.

Called by ``engine`` for every plan with a ``PolicyState`` snapshot taken from the store. Pure:
the clock and the history come in as values. Modes: ``strict`` (risk tier 2 and 3 need approval),
``relaxed`` (only tier 3 needs approval), ``disabled`` (self-healing off: diagnose and report,
never run). Limits are enforced in every mode.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from orchestrator.core.rulefile import load_with_lines, validate
from orchestrator.models import Decision, Plan, Verdict

_HH_MM = re.compile(r"^([01][0-9]|2[0-3]):[0-5][0-9]$")
_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class _Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BlastRadius(_Rule):
    window_s: float = Field(600.0, gt=0)
    max_hosts: int = Field(5, ge=1, description="hosts remediated per window, fleet-wide")
    max_broken_fraction: float = Field(
        0.5, gt=0, le=1, description="more of the fleet firing at once: stop and page"
    )
    max_unknown_fraction: float = Field(
        0.5, gt=0, le=1, description="more of the fleet unseen at once (missing or stale data): "
        "the fleet cannot be judged; stop and page"
    )


class CircuitBreaker(_Rule):
    max_failures: int = Field(3, ge=1, description="failed runs of one remediation per window")
    window_s: float = Field(3600.0, gt=0)


class MaintenanceWindow(_Rule):
    """A weekly UTC window during which matching hosts are left alone."""

    name: str
    hosts: tuple[str, ...] = Field(min_length=1, description="fnmatch patterns on host names")
    days: tuple[str, ...] = _DAYS
    start: time
    end: time

    @field_validator("start", "end", mode="before")
    @classmethod
    def _hh_mm(cls, v: object) -> time:
        # YAML reads an unquoted 2:00 as the number 120; only quoted "HH:MM" (UTC) is accepted.
        if not isinstance(v, str) or not _HH_MM.match(v):
            raise ValueError(f'write the time as a quoted "HH:MM" in UTC, not {v!r}')
        hours, minutes = v.split(":")
        return time(int(hours), int(minutes))

    @field_validator("days")
    @classmethod
    def _days(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        bad = [d for d in v if d not in _DAYS]
        if bad:
            raise ValueError(f"unknown days {bad}; use {list(_DAYS)}")
        return v

    def covers(self, host: str, now: float) -> bool:
        if not any(fnmatch.fnmatchcase(host, p) for p in self.hosts):
            return False
        moment = datetime.fromtimestamp(now, tz=UTC)
        if _DAYS[moment.weekday()] not in self.days:
            return False
        t = moment.time()
        if self.start <= self.end:
            return self.start <= t < self.end
        return t >= self.start or t < self.end  # window crosses midnight


class Flapping(_Rule):
    """The same fault back on a host after its fix: wait longer each time it comes back soon,
    and escalate it as recurring once the same fix ran ``max_returns`` times in a day."""

    window_s: float = Field(3600.0, gt=0, description="runs on one host counted over this "
                            "window for the back-off")
    backoff: float = Field(2.0, ge=1, description="each return multiplies the cooldown by this")
    max_returns: int = Field(3, ge=1, description="runs in recurring_window_s after which the "
                             "fault is escalated as recurring instead of fixed again: the fix "
                             "does not hold")
    recurring_window_s: float = Field(86_400.0, gt=0, description="runs on one host counted "
                                      "over this window for max_returns (a day by default)")


# Units a remediation never restarts or stops, whatever the labels say: the way in (sshd), the
# host's own plumbing (dbus, systemd), the eyes (exporters) and selfheal itself.
DEFAULT_PROTECTED_UNITS = (
    "ssh.service", "sshd.service", "ssh.socket", "sshd@*.service",
    "dbus.service", "dbus.socket", "dbus-broker.service",
    "dbus-org.*",  # D-Bus activation aliases of systemd's own services (logind, networkd, ...)
    "systemd-*", "init.scope", "-.slice", "user@*.service", "user-runtime-dir@*",
    "rescue.service", "emergency.service", "getty@*", "serial-getty@*", "console-getty.service",
    "autovt@*",
    "prometheus-node-exporter*", "node_exporter*", "node-exporter*", "prometheus-*-exporter*",
    "*_exporter.service", "*-exporter.service",
    "selfheal.service", "selfheal-sweep.*", "selfheal-serve.*", "selfheal-baseline.*",
)


class Policy(_Rule):
    mode: Literal["strict", "relaxed", "disabled"] = "strict"
    max_concurrent: int = Field(2, ge=1)
    blast_radius: BlastRadius = BlastRadius()
    circuit_breaker: CircuitBreaker = CircuitBreaker()
    maintenance_windows: tuple[MaintenanceWindow, ...] = ()
    approvers: tuple[str, ...] = Field((), description="who may approve; none: nothing that "
                                       "needs approval can be approved")
    protected_units: tuple[str, ...] = Field(DEFAULT_PROTECTED_UNITS, description="fnmatch "
                                             "patterns of systemd units never restarted or "
                                             "stopped")
    restart_units: tuple[str, ...] = Field(("*",), description="fnmatch patterns of the units "
                                           "a remediation may restart or stop (protected_units "
                                           "still win)")
    flapping: Flapping = Flapping()
    approval_ttl_s: float = Field(3600.0, gt=0, description="an approval older than this "
                                  "no longer counts; the incident asks again")

    def history_window_s(self, longest_cooldown_s: float) -> float:
        """How far back the run history must reach for every window to be judged."""
        return max(self.blast_radius.window_s, self.circuit_breaker.window_s,
                   self.flapping.window_s, self.flapping.recurring_window_s, longest_cooldown_s)

    def protected_unit(self, value: str) -> str | None:
        """The protected_units pattern ``value`` (a unit name, ``.service`` optional) matches."""
        return _matching(value, self.protected_units)

    def restartable(self, unit: str) -> bool:
        """Whether ``unit`` (``.service`` optional) is on the restart_units allow-list."""
        return _matching(unit, self.restart_units) is not None


def _matching(unit: str, patterns: Sequence[str]) -> str | None:
    """The first of ``patterns`` that ``unit`` matches; a name without a suffix is also tried
    as ``NAME.service``, as systemctl reads it."""
    names = (unit,) if "." in unit else (unit, f"{unit}.service")
    return next((p for p in patterns if any(fnmatch.fnmatchcase(n, p) for n in names)), None)


def parse_policy(text: str, filename: str = "policy.yml") -> Policy:
    data, lines = load_with_lines(text, filename)
    return validate(Policy, data or {}, filename, lines)


@dataclass(frozen=True)
class PastRun:
    """One earlier remediation run, as the store remembers it."""

    host: str
    remediation: str
    started_at: float
    failed: bool
    subject: str = ""  # the series the run fixed on its host (cooldowns are per subject)


@dataclass(frozen=True)
class PolicyState:
    """What the guardrails need to know about the world right now."""

    now: float
    fleet_size: int
    broken_hosts: int  # hosts with a firing signal
    running: int
    history: Sequence[PastRun]
    pending: Sequence[PastRun] = ()  # plans admitted earlier in this sweep
    unknown_hosts: int = 0  # hosts missing a signal they must have (or with stale data)

    @property
    def runs(self) -> list[PastRun]:
        return [*self.history, *self.pending]


def decide(plan: Plan, policy: Policy, state: PolicyState, dry_run: bool = False,
           approved: bool = False, manual: bool = False) -> Decision:
    """The verdict for one plan, with every reason.

    Precedence: refuse (never acceptable: a protected unit, a fix that does not hold) over
    suppress (maintenance) over hold (a limit says wait) over ask (approval) over run.
    ``approved``: a human approved this plan; it skips only the approval step, not the limits.
    ``manual``: a human runs it by hand: fleet-wide limits (too much broken, blast radius) are
    the human's call; mode, maintenance, cooldown, breaker and approval still hold, and a
    flapping fault holds (a human may force it) instead of refusing.
    """
    refuse = _protected(plan, policy)
    suppress = [f"{host} is in maintenance window '{window.name}'"
                for window in policy.maintenance_windows for host in plan.targets
                if window.covers(host, state.now)]
    hold: list[str] = []
    ask: list[str] = []
    if policy.mode == "disabled":
        hold.append("policy mode is 'disabled': self-healing is off")
    if not manual and state.fleet_size and state.broken_hosts / state.fleet_size > (
        policy.blast_radius.max_broken_fraction
    ):
        hold.append(
            f"{state.broken_hosts} of {state.fleet_size} hosts are broken, over "
            f"{policy.blast_radius.max_broken_fraction:.0%}: stop and page a human"
        )
    if not manual and state.fleet_size and state.unknown_hosts / state.fleet_size > (
        policy.blast_radius.max_unknown_fraction
    ):
        hold.append(
            f"{state.unknown_hosts} of {state.fleet_size} hosts are unknown (missing or stale "
            f"data), over {policy.blast_radius.max_unknown_fraction:.0%}: the fleet cannot be "
            "judged; stop and page a human"
        )
    for host in plan.targets:
        waits, flaps = _cooldown(plan, policy, state, host)
        hold.extend(waits)
        (hold if manual else refuse).extend(flaps)
    recent_hosts = {r.host for r in state.runs
                    if state.now - r.started_at < policy.blast_radius.window_s}
    if not manual and len(recent_hosts | set(plan.targets)) > policy.blast_radius.max_hosts:
        hold.append(f"blast radius: {len(recent_hosts)} hosts remediated in the last "
                    f"{policy.blast_radius.window_s:.0f}s (max {policy.blast_radius.max_hosts})")
    failures = sum(1 for r in state.history if r.remediation == plan.remediation and r.failed
                   and state.now - r.started_at < policy.circuit_breaker.window_s)
    if failures >= policy.circuit_breaker.max_failures:
        hold.append(f"circuit breaker open: {plan.remediation} failed {failures} times in "
                    f"{policy.circuit_breaker.window_s:.0f}s")
    if not approved and (plan.risk_tier >= 3 or (policy.mode == "strict"
                                                 and plan.risk_tier >= 2)):
        ask.append(f"risk tier {plan.risk_tier} needs approval in {policy.mode} mode")
    if refuse:
        return Decision(Verdict.REFUSE, tuple(refuse + suppress + hold))
    if suppress:
        return Decision(Verdict.SUPPRESS, tuple(suppress + hold))
    if hold:
        return Decision(Verdict.HOLD, tuple(hold + ask))
    if ask:
        return Decision(Verdict.ASK, tuple(ask))
    if dry_run:
        return Decision(Verdict.DRY_RUN, ("--dry-run: check mode only",))
    if state.running >= policy.max_concurrent:
        return Decision(Verdict.DEFER, (f"{state.running} fixes running, max_concurrent is "
                                        f"{policy.max_concurrent}: next sweep",))
    return Decision(Verdict.RUN, (f"risk tier {plan.risk_tier} runs in {policy.mode} mode",))


def _protected(plan: Plan, policy: Policy) -> list[str]:
    """A parameter naming a protected unit refuses the plan, whatever the labels said."""
    reasons = []
    for name, value in plan.params.items():
        pattern = policy.protected_unit(str(value)) if isinstance(value, str) else None
        if pattern is not None:
            reasons.append(f"parameter {name}={value!r} names a protected unit (policy.yml "
                           f"protected_units: {pattern!r}); selfheal never restarts or stops it")
        elif _names_unit(name) and isinstance(value, str) and value and not (
                policy.restartable(value)):
            reasons.append(f"parameter {name}={value!r} names a unit that policy.yml "
                           "restart_units does not allow; add a pattern there to let selfheal "
                           "restart it")
    return reasons


def _names_unit(param: str) -> bool:
    """Parameters that name a systemd unit: ``<role>_unit`` (role options carry the role's
    name, as ansible-lint's production profile wants)."""
    return param.endswith("_unit")


def _cooldown(plan: Plan, policy: Policy, state: PolicyState,
              host: str) -> tuple[list[str], list[str]]:
    """(hold reasons, refuse reasons) from this remediation's earlier runs on ``host``.

    The cooldown after the n-th run in the flapping window is cooldown * backoff**(n-1); after
    ``max_returns`` runs in the recurring window the fix is not holding and the fault is
    escalated as recurring, with the run history.
    """
    flap = policy.flapping
    runs = sorted(r.started_at for r in state.runs if r.host == host
                  and r.remediation == plan.remediation and r.subject == plan.subject
                  and state.now - r.started_at < max(
                      flap.window_s, flap.recurring_window_s, plan.cooldown_s))
    if not runs:
        return [], []
    where = f"{host} ({plan.subject})" if plan.subject else host  # which unit, which mount
    returns = [t for t in runs if state.now - t < flap.recurring_window_s]
    if len(returns) >= flap.max_returns:
        ages = ", ".join(f"{state.now - t:.0f}s" for t in returns)
        return [], [f"recurring (flapping): {plan.remediation} ran {len(returns)} times on "
                    f"{where} in the last {flap.recurring_window_s:.0f}s (runs {ages} ago) and "
                    "the fault is back: the fix does not hold"]
    recent = [t for t in runs if state.now - t < flap.window_s]
    cooldown = plan.cooldown_s * flap.backoff ** max(0, len(recent) - 1)
    since = state.now - runs[-1]
    if since < cooldown:
        return [f"{plan.remediation} ran on {where} {since:.0f}s ago; cooldown is "
                f"{cooldown:.0f}s" + (f" (backed off: {len(recent)} runs in "
                                      f"{flap.window_s:.0f}s)" if len(recent) > 1 else "")], []
    return [], []
