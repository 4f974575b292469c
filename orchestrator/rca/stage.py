"""The root-cause analysis stage: gather the context, report by the rules, then ask the model.

Called by ``selfheal diagnose`` (``explain``) and, through the Controller's ``explain`` hook, by
the sweep for each new incident after its fix ran (``for_incident``). Each part is passed in so
tests build their own: the Prometheus range query, the Ansible executor (for the read-only
``diagnose`` role), the store (past incidents) and the model's completion function. A part that
fails leaves its section empty with a note; the rules' report is always there, and the model
can only add to it (``rca.bind``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from orchestrator.config import LlmSettings, RcaSettings
from orchestrator.core.diagnose import HostVerdict
from orchestrator.execute.inventory import Inventory
from orchestrator.execute.runner import AnsibleExecutor
from orchestrator.models import Diagnosis, Incident
from orchestrator.rca import bind, facts, llm, mask
from orchestrator.rca.context import Context, HostFacts, Series, Similar
from orchestrator.rca.report import LlmStatus, Report, rules_report
from orchestrator.rca.similar import document, similar
from orchestrator.rca.timeline import timeline
from orchestrator.rules import Rules
from orchestrator.sources.prometheus import RangeFn
from orchestrator.store.db import Store

log = logging.getLogger(__name__)
BASICS = ("cpu", "memory_available", "disk_available", "load")  # always worth a look
MAX_SIGNALS = 6
RAW_MAX = 6000  # characters of the model's raw answer kept with the incident


@dataclass(frozen=True)
class Explanation:
    """One diagnosis explained: the report, the context it used, the model's raw answer."""

    context: Context
    report: Report
    raw_answer: str | None = None
    llm_s: float = 0.0

    def detail(self) -> dict[str, Any]:
        """What the incident keeps for the audit."""
        return {"rca": self.report.as_data(), "rca_context": self.context.as_data(),
                "rca_llm_raw": self.raw_answer, "rca_llm_s": round(self.llm_s, 3)}


@dataclass
class RcaStage:
    rules: Rules
    inventory: Inventory
    settings: RcaSettings
    llm: LlmSettings
    query_range: RangeFn | None = None
    executor: AnsibleExecutor | None = None
    store: Store | None = None
    instance_label: str = "instance"
    secrets: tuple[str, ...] = ()  # redacted wherever they might appear
    completion: Callable[..., Any] | None = None  # litellm's completion unless a test passes one
    clock: Callable[[], float] = time.time

    def gather(self, verdict: HostVerdict, diagnosis: Diagnosis | None = None,
               exclude: int | None = None) -> Context:
        """The context for ``verdict``'s host; ``diagnosis`` picks the signals and unit."""
        host = self.inventory.hosts[verdict.host]
        now = self.clock()
        timings: dict[str, float] = {}
        series: tuple[Series, ...] = ()
        notes: tuple[str, ...] = ()
        if self.query_range is not None:
            started = time.monotonic()
            series, notes = timeline(self.query_range, self._signals(verdict), host.prometheus_host,
                                     now, self.settings.history_s, self.settings.points,
                                     self.instance_label)
            timings["timeline_s"] = round(time.monotonic() - started, 3)
        found = HostFacts("off", "rca.host_facts is off" if not self.settings.host_facts
                          else "no executor")
        if self.executor is not None and self.settings.host_facts:
            started = time.monotonic()
            labels = diagnosis.labels if diagnosis else {}
            results, error = facts.collect(self.executor, verdict.host, labels.get("unit", ""),
                                           self.settings.journal_minutes,
                                           labels.get("mountpoint", ""))
            found = facts.parse_facts(results, error, self.clock(), self.secrets)
            timings["facts_s"] = round(time.monotonic() - started, 3)
        close: tuple[Similar, ...] = ()
        if self.store is not None and diagnosis is not None:
            started = time.monotonic()
            query = document(diagnosis.fault, host.groups, diagnosis.evidence)
            close = similar(query, self.store.incidents(limit=500),
                            lambda h: self.inventory.hosts[h].groups
                            if h in self.inventory.hosts else (), exclude=exclude)
            timings["similar_s"] = round(time.monotonic() - started, 3)
        return Context(
            host=verdict.host, groups=tuple(host.groups), at=now, health=verdict.health.value,
            diagnoses=tuple(_masked(d) for d in verdict.diagnoses),
            notes=(*verdict.notes, *notes),
            signals={s: h.value for s, h in verdict.signals.items()},
            timeline=series, facts=found, similar=close, timings=timings)

    def explain(self, verdict: HostVerdict, diagnosis: Diagnosis | None = None,
                context: Context | None = None, use_llm: bool = True,
                keep: Callable[[Mapping[str, Any]], None] | None = None) -> Explanation:
        """The rules' report, then the model's checked answer when one is configured.
        ``keep`` is given the rules' report (as incident detail) before the model is asked."""
        context = context or self.gather(verdict, diagnosis)
        report = rules_report(context, diagnosis, self.rules)
        if self.llm.model is None or not use_llm:
            why = ("--no-llm: rules alone" if self.llm.model is not None
                   else "no model configured (llm.model): rules alone")
            return Explanation(context, replace(report, llm_reason=why))
        if keep is not None:
            keep(Explanation(context, report).detail())
        started = time.monotonic()
        raw: str | None = None
        data = context.as_data()
        try:
            prompt = llm.messages(data, report, self.rules, self.secrets)
            raw = llm.complete(self.llm, prompt, self.completion)
            checked = bind.check(bind.parse(raw), report, self.rules)
        except llm.LlmError as exc:
            report = replace(report, llm_status=LlmStatus.ERROR,
                             llm_reason=f"{exc}: rules alone")
        except bind.GarbageAnswer as exc:
            report = replace(report, llm_status=LlmStatus.ERROR,
                             llm_reason=f"the model's answer is not usable ({exc}): rules alone")
        except ValueError as exc:  # bind.check: off the catalog, bad parameter, lowered tier
            report = replace(report, llm_status=LlmStatus.REJECTED,
                             llm_reason=f"answer rejected: {exc}; rules alone")
            log.warning("model answer rejected", extra={"host": verdict.host,
                                                        "reason": str(exc)[:300]})
        else:
            report = bind.merge(report, checked, data)
        kept = mask.redact(raw, self.secrets)[:RAW_MAX] if raw is not None else None
        return Explanation(context, report, kept, time.monotonic() - started)

    def for_incident(self, incident: Incident, verdict: HostVerdict, diagnosis: Diagnosis,
                     keep: Callable[[Mapping[str, Any]], None] | None = None
                     ) -> Mapping[str, Any]:
        """The Controller's hook: what a new incident keeps (report, context, raw answer);
        ``keep`` gets the rules' report first, in case the model runs out of time."""
        context = self.gather(verdict, diagnosis, exclude=incident.id)
        return self.explain(verdict, diagnosis, context, keep=keep).detail()

    def _signals(self, verdict: HostVerdict) -> list[Any]:
        signals = self.rules.faults.signals
        faults = self.rules.faults.faults
        names: list[str] = []
        for d in verdict.diagnoses:
            fault = faults.get(d.fault)
            if fault is not None:
                names += [*fault.when_firing, *(x.signal for x in fault.when_detected),
                          *fault.when_healthy]
        names += [s for s, h in verdict.signals.items() if h.value != "healthy"]
        names += list(BASICS)
        unique = [n for i, n in enumerate(names) if n in signals and n not in names[:i]]
        return [signals[n] for n in unique[:MAX_SIGNALS]]


def _masked(d: Diagnosis) -> dict[str, Any]:
    return {"fault": d.fault, "subject": mask.subject(d.subject),
            "confidence": round(d.confidence, 3),
            "evidence": [mask.template(e, 200) for e in d.evidence[:8]],
            "remediations": list(d.remediations), "labels": mask.labels(d.labels)}
