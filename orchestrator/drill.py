"""A fault drill: inject a lab fault, sweep until the incident ends, and time every phase.

Called by ``selfheal demo``, ``benchmarks/mttr.py`` and the e2e tests, so all three measure the
same thing: detect = first sweep that opened the incident minus injection; remediate = the
Ansible run; verify = play end to a fresh healthy sample; end_to_end = injection to verified.
``run_drill`` sweeps itself; ``await_drill`` leaves the sweeping to a running service (``selfheal
serve`` woken by Alertmanager) and watches its store.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from orchestrator.engine import Controller, SweepReport
from orchestrator.models import Incident, IncidentState
from orchestrator.store.db import Store


@dataclass(frozen=True)
class DrillResult:
    host: str
    fault: str
    remediation: str | None
    state: str
    incident_id: int | None
    injected_at: float
    detected_at: float | None
    remediation_started_at: float | None
    remediation_finished_at: float | None
    resolved_at: float | None
    sweeps: int

    @property
    def healed(self) -> bool:
        return self.state == IncidentState.RESOLVED

    def _span(self, a: float | None, b: float | None) -> float | None:
        return None if a is None or b is None else round(b - a, 3)

    @property
    def detect_s(self) -> float | None:
        return self._span(self.injected_at, self.detected_at)

    @property
    def remediate_s(self) -> float | None:
        return self._span(self.remediation_started_at, self.remediation_finished_at)

    @property
    def verify_s(self) -> float | None:
        return self._span(self.remediation_finished_at, self.resolved_at)

    @property
    def end_to_end_s(self) -> float | None:
        return self._span(self.injected_at, self.resolved_at)


def run_drill(controller: Controller, fault: str, host: str, inject: Callable[[str, str], float],
              timeout_s: float = 90.0, poll_s: float = 0.2,
              on_sweep: Callable[[SweepReport], None] | None = None) -> DrillResult:
    """Inject ``fault`` on ``host`` (``inject`` returns the injection time) and sweep until the
    incident on that host reaches a terminal state or ``timeout_s`` passes."""
    controller.executor.prepare()  # a long-lived loop pays Ansible's import before the fault
    injected_at = inject(fault, host)
    deadline = time.monotonic() + timeout_s
    sweeps = 0
    while time.monotonic() < deadline:
        report = controller.sweep()
        sweeps += 1
        if on_sweep is not None:
            on_sweep(report)
        for action in report.actions:
            if action.host == host and action.incident_id is not None:
                incident = controller.store.get(action.incident_id)
                if incident is not None and incident.state.is_terminal \
                        and incident.detected_at >= injected_at:
                    return _result(incident, injected_at, sweeps)
        time.sleep(poll_s)
    return DrillResult(host, fault, None, "timed_out", None, injected_at, None, None, None,
                       None, sweeps)


def await_drill(store: Store, fault: str, host: str, inject: Callable[[str, str], float],
                timeout_s: float = 90.0, poll_s: float = 0.1) -> DrillResult:
    """Inject ``fault`` on ``host`` and wait until a running service has opened and ended the
    incident for it (``sweeps`` is 0: the service's sweeps are not counted here)."""
    injected_at = inject(fault, host)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for incident in store.incidents(limit=20, host=host):
            if incident.detected_at >= injected_at and incident.state.is_terminal:
                return _result(incident, injected_at, 0)
        time.sleep(poll_s)
    return DrillResult(host, fault, None, "timed_out", None, injected_at, None, None, None,
                       None, 0)


def _result(incident: Incident, injected_at: float, sweeps: int) -> DrillResult:
    return DrillResult(incident.host, incident.fault, incident.remediation,
                       incident.state.value, incident.id, injected_at, incident.detected_at,
                       incident.remediation_started_at, incident.remediation_finished_at,
                       incident.resolved_at, sweeps)
