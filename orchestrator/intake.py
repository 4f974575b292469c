"""Alert intake: what ``selfheal serve`` does with an Alertmanager payload once it is let in.

Called by ``orchestrator.api`` for ``/api/v1/alert/immediate`` and ``/api/v1/alert/batch``.
An alert is an observation, never an order: it is kept (deduplicated by fingerprint, startsAt
and status), and it wakes a sweep of its host, which diagnoses it from Prometheus and passes
every guardrail (counting the whole fleet) as any other sweep does; a resolved alert wakes one
too, so a cleared fault is settled at once. ``immediate`` wakes the sweep on arrival; ``batch``
waits ``window_s`` and merges the alerts that arrived meanwhile by root cause (host, fault and
subject) into one sweep of their hosts.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from orchestrator.core.faults import FaultRules
from orchestrator.execute.inventory import Inventory
from orchestrator.sources.alertmanager import WebhookPayload, map_alerts
from orchestrator.store.db import Store

log = logging.getLogger(__name__)
Endpoint = Literal["immediate", "batch"]


@dataclass(frozen=True)
class RootCause:
    """Alerts of one payload about one fault on one host and subject (a unit, a mount point;
    "" host-wide)."""

    host: str
    fault: str
    subject: str
    alerts: int


@dataclass(frozen=True)
class Received:
    """What became of one payload."""

    accepted: int  # new alerts kept
    duplicates: int  # seen before (Alertmanager repeats groups)
    refused: tuple[str, ...]  # alerts naming no inventory host, with the reason
    root_causes: tuple[RootCause, ...]
    sweep: str  # "now", "in N s" (batch), or "none" (nothing new)


class Intake:
    """Keeps alerts and wakes the sweep loop; thread-safe (the API calls it from a pool)."""

    def __init__(self, store: Store, inventory: Callable[[], Inventory],
                 faults: Callable[[], FaultRules], wake: Callable[[frozenset[str]], None],
                 window_s: float,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.inventory = inventory
        self.faults = faults
        self.wake = wake
        self.window_s = window_s
        self.clock = clock
        self._lock = threading.Lock()
        self._pending: Counter[tuple[str, str, str]] = Counter()
        self._timer: threading.Timer | None = None
        self._opened = 0.0

    def receive(self, payload: WebhookPayload, endpoint: Endpoint) -> Received:
        inventory = self.inventory()
        mapped = map_alerts(payload, inventory.by_prometheus_host(),
                            frozenset(inventory.hosts), self.faults())
        for reason in mapped.refused:
            log.warning("alert refused", extra={"reason": reason, "receiver": payload.receiver,
                                                "endpoint": endpoint})
        now = self.clock()
        kept = self.store.record_alerts(list(mapped.alerts), now)
        new = [alert for alert, fresh in zip(mapped.alerts, kept, strict=True) if fresh]
        causes = Counter((a.host, a.fault, a.subject) for a in new)
        roots = tuple(RootCause(*cause, alerts=n) for cause, n in sorted(causes.items()))
        when = "none"
        if new and endpoint == "immediate":
            self.wake(frozenset(a.host for a in new))
            when = "now"
        elif new:
            when = f"in {self._hold(causes):.1f} s"
        if new:
            log.info("alerts received", extra={
                "endpoint": endpoint, "new": len(new), "root_causes": len(roots),
                "hosts": sorted({a.host for a in new})[:20], "sweep": when})
        return Received(len(new), len(mapped.alerts) - len(new), mapped.refused, roots, when)

    def _hold(self, causes: Counter[tuple[str, str, str]]) -> float:
        """Add to the open batch window (opening one if none is open); seconds to its end."""
        with self._lock:
            self._pending.update(causes)
            if self._timer is None:
                self._timer = threading.Timer(self.window_s, self._flush)
                self._timer.daemon = True
                self._opened = self.clock()
                self._timer.start()
            return max(0.0, self._opened + self.window_s - self.clock())

    def _flush(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, Counter()
            self._timer = None
        log.info("alert batch: one sweep", extra={
            "alerts": sum(pending.values()), "root_causes": len(pending),
            "causes": [f"{h}/{f}" + (f"/{s}" if s else "") for h, f, s in sorted(pending)
                       ][:20]})
        self.wake(frozenset(host for host, _, _ in pending))

    def close(self) -> None:
        """Cancel an open batch window (the service is stopping: its sweep is not needed)."""
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
