"""Second hostile review: systemd's own units that the default protected_units miss."""

from __future__ import annotations

import pytest

from orchestrator.core.policy import Policy, PolicyState, decide
from orchestrator.models import Plan, Verdict


@pytest.mark.parametrize("unit", ["rescue.service", "emergency.service", "getty@tty1.service",
                                  "serial-getty@ttyS0.service", "user-runtime-dir@0.service"])
def test_systemds_own_units_are_protected(unit: str) -> None:
    """The rule is "never restart or stop ... systemd's own units"; the defaults catch those
    named ``systemd-*`` but not the others systemd ships (Debian: /lib/systemd/system from the
    systemd package). Starting rescue.service or emergency.service runs a sulogin shell on the
    console; stopping user-runtime-dir@0 removes /run/user/0; a getty is the console way in
    when SSH is gone."""
    plan = Plan("service_crash", "service_restart", "service_restart", ("vps1",),
                {"service_restart_unit": unit,
                 "service_restart_health_url": "http://10.0.0.1:8080/healthz"},
                1, 300, False,
                "service_up")
    decision = decide(plan, Policy(), PolicyState(0.0, 10, 1, 0, ()))
    assert decision.verdict is Verdict.REFUSE, decision.reasons
