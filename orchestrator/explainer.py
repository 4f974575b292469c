"""Root-cause analysis of new incidents beside the sweep: a few workers fed by a bounded queue.

Called by ``engine.Controller``: the service (``selfheal serve``, ``sweep --every``) hands each
incident a sweep opened to the long-lived explainer its ``SweepLoop`` owns (it outlives the
loop's controller rebuilds), so neither the sweep loop nor the controller's act lock waits for an
analysis; a one-shot sweep (cron, by hand) makes one for itself and waits for it before it
returns. Each analysis has a deadline counted from when it was queued: one still queued at its
deadline is not started, one still running at its deadline is recorded with what it had (the
rules' report, handed over before the model is asked) and ends on its own timeouts before its
worker starts the next job, so at most ``workers`` analyses ever run at once (closing does not
wait for a cut one: its result is not wanted). A job's ``record``
writes the result (the controller takes its act lock for it); an analysis that raises is
recorded as failed, never lost.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)
WORKERS = 2  # analyses at once: each may run the `diagnose` role (an ansible-playbook)
QUEUE = 256  # jobs waiting; past it a new incident is recorded as not analysed

Found = Mapping[str, Any]


@dataclass(frozen=True)
class Analysis:
    """One incident's analysis: ``run`` does it (passing its partial result, the rules' report,
    to its argument as soon as it has one), ``record`` keeps what it found."""

    incident_id: int
    run: Callable[[Callable[[Found], None]], Found]
    record: Callable[[Found], None]
    due: float  # monotonic: past it the analysis is cut
    deadline_s: float


def late(partial: Found | None, deadline_s: float, queued: bool) -> dict[str, Any]:
    """What an incident keeps when its analysis passed its deadline: the partial result (the
    rules' report) if there is one, with the reason."""
    found = dict(partial or {})
    report = dict(found.get("rca") or {})
    where = ("waited in the queue past its" if queued else "passed its")
    report["llm"] = {"status": "error", "reason": (
        f"the analysis {where} {deadline_s:g} s deadline"
        + (": the rules' report stands alone" if report else "")
        + "; `selfheal diagnose HOST` runs it without one")}
    found["rca"] = report
    return found


def not_queued(waiting: int) -> dict[str, Any]:
    """What an incident keeps when the queue was full: said, never silently skipped."""
    return {"rca": {"llm": {"status": "error", "reason": (
        f"not analysed: {waiting} analyses were already waiting (a storm of new incidents); "
        "`selfheal diagnose HOST` runs it")}}}


class Explainer:
    """Runs ``Analysis`` jobs on ``workers`` threads, started on the first job."""

    def __init__(self, workers: int = WORKERS, size: int = QUEUE,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.workers = workers
        self.clock = clock
        self._queue: queue.Queue[Analysis | None] = queue.Queue(maxsize=size)
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._closed = False

    def submit(self, job: Analysis) -> bool:
        """Queue ``job``; False when the queue is full or the explainer is closed."""
        with self._lock:
            if self._closed:
                return False
            if not self._threads:
                self._threads = [threading.Thread(target=self._work, name=f"rca-{n}",
                                                  daemon=True) for n in range(self.workers)]
                for thread in self._threads:
                    thread.start()
            try:
                self._queue.put_nowait(job)
            except queue.Full:
                return False
            return True

    @property
    def waiting(self) -> int:
        return self._queue.qsize()

    def close(self) -> None:
        """Take no more jobs, finish (or cut at their deadlines) the queued ones, then return."""
        with self._lock:
            self._closed = True
            threads = list(self._threads)
        for _ in threads:
            self._queue.put(None)
        for thread in threads:
            thread.join()

    def _work(self) -> None:
        cut: threading.Thread | None = None  # an analysis past its deadline, still ending
        while (job := self._queue.get()) is not None:
            if cut is not None:  # it ends on its own timeouts before this worker goes on
                cut.join()
            try:
                cut = self._one(job)
            except Exception:  # a worker that dies would leave every later incident waiting
                log.exception("root-cause analysis: recording failed",
                              extra={"incident": job.incident_id})
                cut = None

    def _one(self, job: Analysis) -> threading.Thread | None:
        """Run and record ``job``; the analysis's thread when it was cut and still runs."""
        left = job.due - self.clock()
        if left <= 0:
            job.record(late(None, job.deadline_s, queued=True))
            return None
        partial: dict[str, Found] = {}
        result: dict[str, Found] = {}
        ended = threading.Event()

        def analyse() -> None:
            try:
                result["found"] = job.run(lambda found: partial.update(found=found))
            except Exception as exc:  # an advisory stage: say it failed, never stop
                log.exception("root-cause analysis failed", extra={"incident": job.incident_id})
                result["found"] = {"rca": {"llm": {
                    "status": "error", "reason": f"{type(exc).__name__}: analysis failed"}}}
            finally:
                ended.set()

        thread = threading.Thread(target=analyse, name="rca-analysis", daemon=True)
        thread.start()
        if ended.wait(left):
            job.record(result["found"])
            return None
        job.record(late(partial.get("found"), job.deadline_s, queued=False))
        return thread
