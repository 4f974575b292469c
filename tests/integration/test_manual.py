"""``selfheal remediate`` by hand (``orchestrator.manual.run_by_hand``), found by a hostile review.

Real Prometheus and SQLite store; only ansible-runner's ``run`` is replaced at the edge by
``Fixer`` (see test_engine_guardrails).
"""

from __future__ import annotations

import getpass
from pathlib import Path

import pytest

from orchestrator.errors import SelfhealError
from orchestrator.manual import ManualRequest, run_by_hand
from orchestrator.models import Outcome, OutcomeStatus
from tests.integration.conftest import Exporter, RealPrometheus
from tests.integration.test_engine_guardrails import build, crash
from tests.integration.test_engine_hold import with_entry

pytestmark = pytest.mark.integration
NET = "127.0.8"  # this module's hosts


def ask(host: str = "h1", **more: object) -> ManualRequest:
    fields: dict[str, object] = {
        "host": host, "remediation": "service_restart",
        "values": {"service_restart_unit": "app.service", "service_restart_health_url": f"http://{NET}.1:8080/healthz"},
        "check": False, "by": "carol", **more}
    return ManualRequest(**fields)  # type: ignore[arg-type]


def test_force_with_a_reason_overrides_flapping(tmp_path: Path, prometheus: RealPrometheus,
                                                exporter: Exporter) -> None:
    """Flapping is the cooldown backing off: by hand, `--force --reason` passes it (the loop
    still escalates a fix that does not hold)."""
    controller, fixer = build(tmp_path, prometheus, exporter,
                              {"blast_radius": {"max_broken_fraction": 1}}, net=NET)
    controller.rules = with_entry(controller.rules, cooldown_s=1)
    store = controller.store
    for n in range(3):  # three earlier fixes of h1 in the flapping window
        at = controller.clock() - 100 + n
        run = store.start_run(None, "h1", "service_restart", "remediate", False, at)
        store.finish_run(run, "h1", "service_restart", "remediate",
                         Outcome(OutcomeStatus.SUCCEEDED, at, at + 1, False))
    crash(exporter, prometheus, 1, net=NET)
    result = run_by_hand(controller, ask(force=True, reason="the disk is replaced; run it"))
    assert result.ran and result.forced, result.decision.reasons
    assert fixer.calls == [["h1"]]


def test_a_manual_run_that_raises_is_recorded_as_ended(tmp_path: Path, prometheus: RealPrometheus,
                                                       exporter: Exporter) -> None:
    """A play that raises by hand is recorded as failed, as in the loop, not left "started"
    (in ``run_counts``, the health textfile and the audit log)."""
    controller, fixer = build(tmp_path, prometheus, exporter,
                              {"blast_radius": {"max_broken_fraction": 1}}, net=NET)
    fixer.explode_on = {"h1"}
    crash(exporter, prometheus, 1, net=NET)
    with pytest.raises(RuntimeError, match="blew up"):
        run_by_hand(controller, ask())
    assert controller.store.run_counts() == {"failed": 1}
    assert [r.action for r in controller.store.audit_records()
            if r.action.startswith("ansible.")] == ["ansible.remediate.started",
                                                    "ansible.remediate"]


def test_a_typed_approver_name_is_not_an_approval(tmp_path: Path, prometheus: RealPrometheus,
                                                  exporter: Exporter) -> None:
    """Risk tier 3 by hand needs an approver, and who that is comes from the OS user (or who
    sudo'd), never from a name typed into ``--by``."""
    assert getpass.getuser() != "alice"
    controller, fixer = build(tmp_path, prometheus, exporter,
                              {"approvers": ["alice"], "blast_radius": {"max_broken_fraction": 1}},
                              tier=3, net=NET)
    crash(exporter, prometheus, 1, net=NET)
    result = run_by_hand(controller, ask(by="alice"))
    assert not result.ran and fixer.calls == []


def test_a_mistyped_parameter_is_refused_not_ignored(tmp_path: Path, prometheus: RealPrometheus,
                                                     exporter: Exporter) -> None:
    """`-p unti=nginx.service` (a typo of unit) is refused naming the parameters, instead of
    being dropped while the unit from the host's firing series is restarted."""
    controller, fixer = build(tmp_path, prometheus, exporter,
                              {"blast_radius": {"max_broken_fraction": 1}}, net=NET)
    crash(exporter, prometheus, 1, net=NET)  # app.service fires on h1
    request = ManualRequest("h1", "service_restart", {"unti": "nginx.service"}, check=False,
                            by="carol")
    with pytest.raises(SelfhealError, match="unti"):
        run_by_hand(controller, request)
    assert fixer.calls == []
