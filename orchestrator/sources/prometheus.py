"""Fleet-wide observation through Prometheus: one instant query per signal, never one per host,
all evaluated at the sweep's one instant.

Called by ``engine`` once per sweep (``observe``) and during verification (``observe`` again with
the one signal being verified). Each returned series is mapped to an inventory host through the
host part of its ``instance`` label. A label that does not look like a host:port is refused and
logged; a series whose target was not scraped within ``max_staleness_s``, or whose value is NaN
or an infinity, is UNKNOWN; when Prometheus does not answer, ``SourceUnavailable`` is raised and
the caller treats every host as UNKNOWN. The HTTP client (credentials, CA file, error text
without secrets) comes from ``sources.client``.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from orchestrator.config import PrometheusSettings
from orchestrator.core.signals import Signal
from orchestrator.errors import SourceUnavailable
from orchestrator.models import Finding, Health
from orchestrator.sources.client import open_client

log = logging.getLogger(__name__)


class QueryFn(Protocol):
    """An instant query: ``promql`` evaluated at ``at`` (seconds since the epoch; None: now)."""

    def __call__(self, promql: str, at: float | None = None) -> list[dict[str, Any]]: ...
_INSTANCE = re.compile(r"^(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[A-Za-z0-9][A-Za-z0-9._-]{0,252}))"
                       r"(?::[0-9]{1,5})?$")
FRESHNESS_QUERY = "timestamp(up)"


def instance_host(instance: str) -> str | None:
    """The host part of an ``instance`` label, or None when it is not a plain host[:port]."""
    match = _INSTANCE.match(instance)
    if not match:
        return None
    return match.group("v6") or match.group("host")


def connect(settings: PrometheusSettings) -> QueryFn:
    """A query function over prometheus-api-client with a short, bounded retry.

    Authenticates as ``settings`` say (``sources.client``); a failure raises
    ``SourceUnavailable`` whose message names the cause and holds no secret.
    """
    from urllib3.util.retry import Retry

    client, how = open_client(settings, Retry(total=1, backoff_factor=0.1), settings.timeout_s)

    def query(promql: str, at: float | None = None) -> list[dict[str, Any]]:
        try:
            return list(client.custom_query(promql, params=None if at is None else {"time": at}))
        except Exception as exc:  # requests and the client raise many kinds; all mean "no data"
            raise SourceUnavailable(how.explain(exc, repr(promql))) from exc

    return query


RangeFn = Callable[[str, float, float, str], list[dict[str, Any]]]
MAX_POINTS = 10_000  # Prometheus refuses range queries of more than 11,000 points per series


def connect_range(settings: PrometheusSettings) -> RangeFn:
    """``(promql, start, end, step) -> result`` over prometheus-api-client, in chunks of at most
    ``MAX_POINTS`` steps, with a bounded retry and timeout; failures raise SourceUnavailable.
    Used by ``baseline train`` (weeks of history) and the root-cause analysis (two hours)."""
    from datetime import UTC, datetime

    from urllib3.util.retry import Retry

    client, how = open_client(settings, Retry(total=2, backoff_factor=0.5),
                              max(settings.timeout_s, 30.0))

    def query(promql: str, start: float, end: float, step: str) -> list[dict[str, Any]]:
        step_s = float(step.rstrip("s"))
        merged: dict[tuple[tuple[str, str], ...], dict[str, Any]] = {}
        chunk_start = start
        while chunk_start <= end:
            chunk_end = min(end, chunk_start + (MAX_POINTS - 1) * step_s)
            try:
                part = client.custom_query_range(
                    promql, datetime.fromtimestamp(chunk_start, UTC),
                    datetime.fromtimestamp(chunk_end, UTC), step)
            except Exception as exc:  # requests and the client raise many kinds
                raise SourceUnavailable(how.explain(exc, f"the range query {promql!r}")) from exc
            for series in part:
                key = tuple(sorted(series.get("metric", {}).items()))
                slot = merged.setdefault(key, {"metric": series.get("metric", {}), "values": []})
                slot["values"].extend(series.get("values") or [])
            chunk_start = chunk_end + step_s
        return list(merged.values())

    return query


class _Freshness:
    """When each target was last scraped, from ``timestamp(up)``.

    A series is matched to its scrape by (job, instance); series whose labels were set by the
    exporter (``honor_labels``) fall back to the instance, then to the job's oldest target.
    """

    def __init__(self) -> None:
        self.pair: dict[tuple[str, str], float] = {}
        self.instance: dict[str, float] = {}
        self.job: dict[str, float] = {}

    def add(self, job: str, instance: str, ts: float) -> None:
        self.pair[(job, instance)] = ts
        self.instance[instance] = max(ts, self.instance.get(instance, ts))
        self.job[job] = min(ts, self.job.get(job, ts))

    def last(self, job: str, instance: str) -> float | None:
        for found in (self.pair.get((job, instance)), self.instance.get(instance),
                      self.job.get(job)):
            if found is not None:
                return found
        return None


@dataclass(frozen=True)
class Observation:
    """One sweep's view of the fleet: findings per host and signal, and what was refused."""

    findings: tuple[Finding, ...]
    refused: tuple[str, ...] = ()
    unmapped: tuple[str, ...] = field(default=())


@dataclass
class PrometheusSource:
    """Observe the fleet through ``query`` (a real Prometheus in production and in tests)."""

    query: QueryFn
    settings: PrometheusSettings

    def observe(self, signals: Iterable[Signal], hosts_by_address: Mapping[str, str],
                now: float) -> Observation:
        """Findings for every host in ``hosts_by_address`` (Prometheus host part -> host name)."""
        label = self.settings.instance_label
        refused: list[str] = []
        unmapped: set[str] = set()
        scraped = _Freshness()
        # every signal is evaluated at the same instant, ``now``: two signals read a moment
        # apart could disagree about one crossing (a fault and the one that supersedes it)
        for series in self.query(FRESHNESS_QUERY, now):
            metric = series.get("metric", {})
            scraped.add(metric.get("job", ""), metric.get(label, ""), float(series["value"][1]))
        findings: list[Finding] = []
        for signal in signals:
            seen: set[str] = set()
            for series in self.query(signal.promql, now):
                metric = {str(k): str(v) for k, v in series.get("metric", {}).items()}
                instance = metric.get(label, "")
                address = instance_host(instance)
                if address is None:
                    refused.append(f"{signal.name}: refused series with {label}={instance[:80]!r}"
                                   " (not a host[:port]; shell or template characters?)")
                    log.warning("refused label", extra={"signal": signal.name,
                                                        "label": label, "value": instance[:200]})
                    continue
                host = hosts_by_address.get(address)
                if host is None:
                    unmapped.add(address)
                    continue
                seen.add(host)
                findings.append(self._judge(signal, host, series, metric, scraped, now))
            for host in set(hosts_by_address.values()) - seen:
                findings.append(Finding(host=host, signal=signal.name, health=Health.UNKNOWN,
                                        observed_at=now, source="prometheus", absent=True,
                                        evidence=(f"{signal.name}: no series for this host",)))
        return Observation(tuple(findings), tuple(refused), tuple(sorted(unmapped)))

    def _judge(self, signal: Signal, host: str, series: dict[str, Any], metric: dict[str, str],
               scraped: _Freshness, now: float) -> Finding:
        value = float(series["value"][1])
        if not math.isfinite(value):  # NaN or ±Inf: a division by zero, a broken exporter
            return Finding(host=host, signal=signal.name, health=Health.UNKNOWN, observed_at=now,
                           source="prometheus", labels=metric,
                           evidence=(f"{signal.promql} = {value}: not a number, so "
                                     f"{signal.name} is unknown (neither healthy nor firing)",))
        sampled = scraped.last(metric.get("job", ""), metric.get(self.settings.instance_label, ""))
        if sampled is None:
            return Finding(host=host, signal=signal.name, health=Health.UNKNOWN, observed_at=now,
                           value=value, source="prometheus", labels=metric,
                           evidence=(f"{signal.name}: no scrape of this target in "
                                     f"{FRESHNESS_QUERY}, so its age is unknown",))
        age = now - sampled
        if age > self.settings.max_staleness_s:
            return Finding(host=host, signal=signal.name, health=Health.UNKNOWN, observed_at=now,
                           value=value, source="prometheus", labels=metric,
                           evidence=(f"{signal.name}: last scrape {age:.0f}s ago, older than "
                                     f"{self.settings.max_staleness_s:.0f}s",))
        health = Health.FIRING if signal.fires(value) else Health.HEALTHY
        return Finding(host=host, signal=signal.name, health=health, observed_at=sampled,
                       value=value, source="prometheus", labels=metric,
                       evidence=(f"{signal.promql} = {value:g} ({signal.name} "
                                 f"{'fires' if health is Health.FIRING else 'ok'} "
                                 f"when {signal.firing_when})",))
