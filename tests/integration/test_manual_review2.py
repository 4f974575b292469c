"""Second hostile review of ``orchestrator.manual`` (run by hand): defects in the first fixes.

Real Prometheus and SQLite store; only ansible-runner's ``run`` is replaced at the edge by
``Fixer`` (see test_engine_guardrails).
"""

from __future__ import annotations

import os
import pwd
from pathlib import Path

import pytest

from orchestrator.errors import SelfhealError
from orchestrator.manual import ManualRequest, run_by_hand
from tests.integration.conftest import Exporter, RealPrometheus
from tests.integration.test_engine_guardrails import build, crash

pytestmark = pytest.mark.integration
NET = "127.0.8"  # shares test_manual's hosts (the modules never run at once)


def test_an_approver_name_in_the_environment_is_not_an_approval(
        tmp_path: Path, prometheus: RealPrometheus, exporter: Exporter,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The approval tier by hand is passed by who really runs the command, from the password
    database: ``LOGNAME=alice selfheal remediate`` is as much a typed name as ``--by alice``.
    (SUDO_USER is trusted only for a root process, where sudo set it; these tests run as root.)"""
    real = pwd.getpwuid(os.getuid()).pw_name
    assert real != "alice"
    monkeypatch.delenv("SUDO_USER", raising=False)
    monkeypatch.setenv("LOGNAME", "alice")
    controller, fixer = build(tmp_path, prometheus, exporter,
                              {"approvers": ["alice"], "blast_radius": {"max_broken_fraction": 1}},
                              tier=3, net=NET)
    crash(exporter, prometheus, 1, net=NET)
    request = ManualRequest("h1", "service_restart",
                            {"service_restart_unit": "app.service",
                             "service_restart_health_url": f"http://{NET}.1:8080/healthz"},
                            check=False, by="carol")
    result = run_by_hand(controller, request)
    assert not result.ran and fixer.calls == []
    # and the audit names who really ran it, not the name in the environment
    (record,) = [r for r in controller.store.audit_records() if r.action.startswith("manual.")]
    assert "alice" not in str(record.payload.get("os_user")), record.payload


def test_a_typed_unit_is_not_checked_against_another_units_health_url(
        tmp_path: Path, prometheus: RealPrometheus, exporter: Exporter) -> None:
    """app.service (port 8080) is down on h1; the operator restarts another unit there with
    ``-p unit=other.service``. The unset labels are filled from h1's firing series whatever its
    unit, so the plan restarts other.service and then waits on app.service's /healthz (port
    8080): a fix judged by another service's health."""
    controller, _ = build(tmp_path, prometheus, exporter,
                              {"blast_radius": {"max_broken_fraction": 1}}, net=NET)
    crash(exporter, prometheus, 1, net=NET)  # app.service on 127.0.8.1:8080 fires
    request = ManualRequest("h1", "service_restart", {"service_restart_unit": "other.service"},
                            check=True, by="carol")
    try:
        result = run_by_hand(controller, request)
    except SelfhealError:  # refusing (asking for the health URL) is right too
        return
    assert result.plan.params["service_restart_unit"] == "other.service"
    url = result.plan.params["service_restart_health_url"]
    assert ":8080/" not in str(url), result.plan.params
