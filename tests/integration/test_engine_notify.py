"""A real sweep that escalates an incident tells the receiver once, not once per sweep."""

from __future__ import annotations

import pytest

from orchestrator.config import NotifySettings
from orchestrator.engine import Controller
from orchestrator.notify import Notifier
from tests.integration.conftest import Exporter, RealPrometheus
from tests.integration.test_engine import publish, world  # noqa: F401  (world is a fixture)
from tests.receivers import webhook

pytestmark = pytest.mark.integration


def test_escalation_in_a_real_sweep_is_sent_once(
        world: Controller, exporter: Exporter, prometheus: RealPrometheus) -> None:  # noqa: F811
    hostile = "x.service; reboot"  # refused at planning: escalated, no play runs
    with webhook() as hook:
        world.notify = Notifier.from_settings(
            NotifySettings(urls=[f"json://127.0.0.1:{hook.port}/"])  # type: ignore[list-item]
        ).incident_changed
        publish(exporter, prometheus, 2, hostile, 0)
        try:
            world.sweep()
            world.sweep()  # the incident is still escalated: nothing new to tell
        finally:
            exporter.gauge.remove("127.0.2.2:8080", hostile)
        assert [p["title"] for p in hook.received] == [
            "selfheal: service_crash on h2 is escalated"]
        assert "refused parameter 'service_restart_unit'" in hook.received[0]["message"]
