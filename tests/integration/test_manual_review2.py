"""Second hostile review of ``orchestrator.manual`` (run by hand): defects in the first fixes.

Real Prometheus and SQLite store; only ansible-runner's ``run`` is replaced at the edge by
``Fixer`` (see test_engine_guardrails).
"""

from __future__ import annotations

import os
import pwd
from pathlib import Path

import pytest

from orchestrator.manual import ManualRequest, run_by_hand
from tests.integration.conftest import Exporter, RealPrometheus
from tests.integration.test_engine_guardrails import build, crash

pytestmark = pytest.mark.integration
NET = "127.0.8"  # shares test_manual's hosts (the modules never run at once)


@pytest.mark.xfail(strict=True, reason="review2: approver identity read from the environment")
def test_an_approver_name_in_the_environment_is_not_an_approval(
        tmp_path: Path, prometheus: RealPrometheus, exporter: Exporter,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The approval tier by hand is passed by who really runs the command. ``getpass.getuser``
    reads $LOGNAME/$USER before the password database, so ``LOGNAME=alice selfheal remediate``
    is as much a typed name as ``--by alice``. (Not root, ``SUDO_USER=alice`` would be the same
    hole: sudo sets it, but so can anyone; these tests run as root, where it is sudo's word.)"""
    real = pwd.getpwuid(os.getuid()).pw_name
    assert real != "alice"
    monkeypatch.delenv("SUDO_USER", raising=False)
    monkeypatch.setenv("LOGNAME", "alice")
    controller, fixer = build(tmp_path, prometheus, exporter,
                              {"approvers": ["alice"], "blast_radius": {"max_broken_fraction": 1}},
                              tier=3, net=NET)
    crash(exporter, prometheus, 1, net=NET)
    request = ManualRequest("h1", "service_restart",
                            {"unit": "app.service", "health_url": f"http://{NET}.1:8080/healthz"},
                            check=False, by="carol")
    result = run_by_hand(controller, request)
    assert not result.ran and fixer.calls == []
