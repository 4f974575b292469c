"""The controller as a service: a fleet sweep every N seconds, and a sweep of an alert's hosts
at once when an alert wakes it.

Called by ``selfheal sweep --every`` and by ``selfheal serve`` (where an alert wakes it for its
host: the sweep observes the whole fleet, so the guardrails still count it, but settles, opens
and acts on that host's incidents only; the periodic fleet sweep keeps its own schedule). The loop
rebuilds its controller every minute (hosts come and go), keeps sweeping with the previous one
when the rebuild fails, waits and goes on when the controller lock is busy or the store is down,
and writes selfheal's own health after each sweep. Every sweep takes the controller's act lock
(``Controller.exclusive``), so a service and a run by hand never act at once. The root-cause
analyses of new incidents run on the loop's own ``Explainer``, beside the sweeps: a storm of new
incidents never holds the loop or the lock (a one-shot ``once()`` outside ``run`` waits for them).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from orchestrator.config import Settings
from orchestrator.engine import Controller, SweepReport
from orchestrator.errors import SelfhealError, TemporaryError
from orchestrator.explainer import Explainer
from orchestrator.health import record_sweep

log = logging.getLogger(__name__)
INVENTORY_REFRESH_S = 60.0
RETRY_S = 1.0  # a skipped sweep of woken hosts is tried again this soon


@dataclass(frozen=True)
class SweepTimes:
    """The last sweep's times, for /metrics (the textfile keeps its own across processes)."""

    started_at: float
    finished_at: float
    last_success: float | None


class SweepLoop:
    """Sweeps the fleet every ``every`` seconds, and the hosts ``wake(hosts)`` names at once."""

    def __init__(self, settings: Settings, build: Callable[[], Controller], every: float,
                 dry_run: bool = False,
                 on_report: Callable[[SweepReport], None] | None = None,
                 recheck_s: float = 0.0) -> None:
        self.settings = settings
        self.build = build
        self.every = every
        # a woken host whose sweep found nothing while its alert still fires is swept again
        # every RETRY_S for this long: the controller's Prometheus may lag the one that fired
        self.recheck_s = recheck_s
        self._watch: dict[str, float] = {}  # woken host -> when its rechecks end (monotonic)
        self.dry_run = dry_run
        self.on_report = on_report
        self.controller = build()
        self.built = time.monotonic()
        self.times: SweepTimes | None = None
        self.last: SweepReport | None = None
        self.skipped = False  # the last sweep could not run (lock busy, store down)
        self.explainer: Explainer | None = None  # run()'s: the sweeps queue analyses on it
        # sweeps that ran, by what started them: "schedule" (the fleet, every ``every`` s) or
        # "alert" (the hosts a wake named); read by /metrics
        self.sweeps: Counter[str] = Counter(schedule=0, alert=0)  # fixed keys: read by copy
        self._hosts: set[str] = set()  # named by wake() since the last sweep began
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()

    def wake(self, hosts: Iterable[str]) -> None:
        """Sweep ``hosts`` now (or right after the sweep in hand); the next fleet sweep stays
        on its schedule."""
        named = set(hosts)
        with self._lock:
            self._hosts.update(named)
            if self.recheck_s > 0:
                self._watch.update(dict.fromkeys(named, time.monotonic() + self.recheck_s))
            self._wake.set()

    def stop(self) -> None:
        """Finish the sweep in hand, then leave ``run``."""
        self._stop.set()
        self._wake.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def once(self, hosts: frozenset[str] | None = None) -> SweepReport:
        """One sweep with the current controller, of the fleet or of ``hosts``; TemporaryError
        when it cannot run now."""
        report = self.controller.sweep(dry_run=self.dry_run, hosts=hosts)
        record_sweep(self.settings.health.textfile_path, report, self.controller.store)
        last = self.times.last_success if self.times else None
        self.times = SweepTimes(report.started_at, report.finished_at,
                                report.finished_at if report.source_error is None else last)
        self.last = report
        if self.on_report is not None:
            self.on_report(report)
        return report

    def run(self) -> None:
        """Sweep until ``stop()``; a sweep that cannot run now is logged and tried again: the
        fleet at its next turn, woken hosts after ``RETRY_S``."""
        self.controller.executor.prepare()  # pay Ansible's import once, before any fault
        # the new incidents' root-cause analyses run beside the loop, on one explainer that
        # outlives the controller's rebuilds; on stop the queued ones finish or are cut
        self.explainer = Explainer()
        self.controller.explainer = self.explainer
        try:
            self._sweeping()
        finally:
            self.explainer.close()
            self.explainer = None

    def _sweeping(self) -> None:
        due = time.monotonic()  # the next fleet sweep; the first one at once
        while not self._stop.is_set():
            self._refresh()
            with self._lock:
                self._wake.clear()
                hosts, self._hosts = frozenset(self._hosts), set()
            fleet = time.monotonic() >= due
            if fleet:
                due = time.monotonic() + self.every
            until = due
            if fleet or hosts:
                try:
                    report = self.once(None if fleet else hosts)
                    self.sweeps["schedule" if fleet else "alert"] += 1
                    self.skipped = False
                    if self._recheck(report):
                        until = min(due, time.monotonic() + RETRY_S)
                except TemporaryError as exc:  # lock busy, store down: wait and go on
                    log.error("sweep skipped; trying again", extra={"error": str(exc)})
                    self.skipped = True
                    if not fleet:  # an alert's host must not wait for the fleet's turn
                        with self._lock:
                            self._hosts.update(hosts)
                        until = min(due, time.monotonic() + RETRY_S)
            if not self._stop.is_set():  # stop() sets the flag before the event
                self._wake.wait(max(0.0, until - time.monotonic()))

    def _recheck(self, report: SweepReport) -> bool:
        """Queue again the watched hosts this sweep covered and found nothing on while their
        alert still fires; True when some are queued. A host leaves the watch once a sweep
        diagnosed something on it, its alert resolved, or its recheck time ran out."""
        now = time.monotonic()
        with self._lock:
            self._watch = {h: end for h, end in self._watch.items() if end > now}
            covered = set(self._watch) if report.hosts is None else (
                set(self._watch) & set(report.hosts))
        if not covered:
            return False
        if report.source_error is not None:  # no data: look again, the watch still runs out
            with self._lock:
                self._hosts.update(covered)
            return True
        found = {v.host for v in report.verdicts if v.diagnoses}
        firing = self.controller.store.firing_hosts(covered - found,
                                                    time.time() - self.recheck_s)
        with self._lock:
            for host in covered - firing:
                self._watch.pop(host, None)
            self._hosts.update(firing)
        return bool(firing)

    def _refresh(self) -> None:
        if time.monotonic() - self.built <= INVENTORY_REFRESH_S:
            return
        try:
            controller = self.build()
            controller.explainer = self.explainer
            self.controller = controller
        except SelfhealError as exc:  # keep sweeping with what we had; say so
            log.error("inventory or rules refresh failed; keeping the previous ones",
                      extra={"error": str(exc)})
        self.built = time.monotonic()
