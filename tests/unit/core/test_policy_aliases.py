"""A protected unit named by one of its D-Bus aliases (found by a hostile review)."""

from __future__ import annotations

import pytest

from orchestrator.core.policy import Policy, PolicyState, decide
from orchestrator.models import Plan, Verdict


@pytest.mark.parametrize("alias", ["dbus-org.freedesktop.login1.service",
                                   "dbus-org.freedesktop.network1.service",
                                   "dbus-org.freedesktop.resolve1.service",
                                   "dbus-org.freedesktop.timesync1.service"])
def test_an_alias_of_a_systemd_unit_is_protected(alias: str) -> None:
    """Debian ships these names as aliases (symlinks) of systemd-logind, -networkd, -resolved
    and -timesyncd; `systemctl restart ALIAS` restarts the systemd unit, so the defaults protect
    them (`dbus-org.*`). Aliases a team adds with Alias= need their own pattern."""
    plan = Plan("service_crash", "service_restart", "service_restart", ("vps1",),
                {"service_restart_unit": alias,
                 "service_restart_health_url": "http://10.0.0.1:8080/healthz"},
                1, 300, False,
                "service_up")
    decision = decide(plan, Policy(), PolicyState(0.0, 10, 1, 0, ()))
    assert decision.verdict is Verdict.REFUSE, decision.reasons
