"""The explainer's queue and deadlines (orchestrator.explainer), with real threads and a clock
the test moves; the analyses are plain functions, the parts a sweep would pass in."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any

from orchestrator.explainer import Analysis, Explainer

Found = Mapping[str, Any]


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def job(n: int, run: Callable[[Callable[[Found], None]], Found],
        kept: dict[int, Found], due: float = 140.0) -> Analysis:
    return Analysis(n, run, lambda found: kept.__setitem__(n, found), due, 40.0)


def test_each_result_is_recorded_and_close_waits_for_the_queue() -> None:
    kept: dict[int, Found] = {}
    explainer = Explainer(workers=2, clock=Clock())
    for n in range(5):
        assert explainer.submit(job(n, lambda keep, n=n: {"rca": {"n": n}}, kept))
    explainer.close()
    assert kept == {n: {"rca": {"n": n}} for n in range(5)}
    assert not explainer.submit(job(9, lambda keep: {}, kept))  # closed: takes no more


def test_a_job_queued_past_its_deadline_is_not_started_and_says_so() -> None:
    clock = Clock()
    kept: dict[int, Found] = {}
    started: list[int] = []
    explainer = Explainer(workers=1, clock=clock)
    clock.now = 200.0  # past the job's due time (140) before a worker takes it
    explainer.submit(job(1, lambda keep: started.append(1) or {"rca": {}}, kept))
    explainer.close()
    assert started == []
    assert "waited in the queue past its 40 s deadline" in kept[1]["rca"]["llm"]["reason"]


def test_a_running_analysis_cut_at_its_deadline_keeps_the_rules_report() -> None:
    clock = Clock()
    kept: dict[int, Found] = {}
    release = threading.Event()
    recorded = threading.Event()

    def slow(keep: Callable[[Found], None]) -> Found:
        keep({"rca": {"summary": "rules say: crashed"}})
        release.wait()  # the model that does not answer: it ends only when the test says
        return {"rca": {"summary": "too late"}}

    def record(found: Found) -> None:
        kept[1] = found
        recorded.set()

    explainer = Explainer(workers=1, clock=clock)
    explainer.submit(Analysis(1, slow, record, due=clock.now + 0.05, deadline_s=40.0))
    recorded.wait()  # recorded while the analysis still runs
    release.set()
    explainer.close()
    assert kept[1]["rca"]["summary"] == "rules say: crashed"
    assert kept[1]["rca"]["llm"] == {"status": "error", "reason": (
        "the analysis passed its 40 s deadline: the rules' report stands alone; "
        "`selfheal diagnose HOST` runs it without one")}


def test_a_full_queue_refuses_and_a_failed_analysis_is_recorded_as_failed() -> None:
    kept: dict[int, Found] = {}
    gate = threading.Event()
    explainer = Explainer(workers=1, size=1, clock=Clock())

    def fails(keep: Callable[[Found], None]) -> Found:
        gate.wait()
        raise RuntimeError("no facts")

    assert explainer.submit(job(1, fails, kept))
    taken = [explainer.submit(job(n, fails, kept)) for n in (2, 3, 4)]
    assert taken.count(False) >= 1  # one running, one waiting at most: the rest refused
    gate.set()
    explainer.close()
    assert kept[1] == {"rca": {"llm": {"status": "error",
                                       "reason": "RuntimeError: analysis failed"}}}
