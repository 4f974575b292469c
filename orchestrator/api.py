"""The HTTP face of ``selfheal serve``: Alertmanager's webhook, /healthz and /metrics (FastAPI).

Called by ``orchestrator.cli.serve``, which builds the parts and runs it under uvicorn. The
alert endpoints check the bearer token before reading a byte of the body (a wrong one gets 401
and a log line, nothing else), cap the body size (413), validate the payload (422 naming the
field) and hand it to ``Intake``; they never run anything themselves. /metrics tells the KPIs
from the store, so it agrees with the cron-mode textfile.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily
from prometheus_client.process_collector import ProcessCollector
from pydantic import ValidationError

from orchestrator.errors import StoreUnavailable
from orchestrator.health import sweep_families
from orchestrator.intake import Endpoint, Intake
from orchestrator.kpi import Kpis, families
from orchestrator.service import SweepTimes
from orchestrator.sources.alertmanager import WebhookPayload
from orchestrator.store.db import Store

log = logging.getLogger(__name__)


class _KpiCollector:
    """KPIs from the store and the loop's sweeps, read on each scrape."""

    def __init__(self, store: Store, times: Callable[[], SweepTimes | None],
                 sweeps: Callable[[], Mapping[str, int]]) -> None:
        self.store = store
        self.times = times
        self.sweeps = sweeps

    def collect(self) -> Iterator[Any]:
        times = self.times()
        if times is not None:
            yield from sweep_families(times.started_at, times.finished_at, times.last_success)
        ran = CounterMetricFamily("selfheal_sweeps", "sweeps since serve started, by what "
                                  "started them: schedule (the fleet, every "
                                  "serve.sweep_every_s) or alert (the alert's hosts)",
                                  labels=["trigger"])
        for trigger in ("schedule", "alert"):
            ran.add_metric([trigger], self.sweeps().get(trigger, 0))
        yield ran
        yield from families(Kpis.from_store(self.store))


class _TooLarge(Exception):
    pass


async def _body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _TooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _TooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def create_app(intake: Intake, store: Store, token: str, max_body_bytes: int,
               alive: Callable[[], bool], times: Callable[[], SweepTimes | None],
               sweeps: Callable[[], Mapping[str, int]]) -> FastAPI:
    """The app; ``alive`` says whether the sweep loop still runs (for /healthz), ``times``
    gives its last sweep's times, ``sweeps`` how many sweeps ran by trigger."""
    disable_created_metrics()  # *_created series: noise on every counter, no dashboard needs
    app = FastAPI(title="selfheal", docs_url=None, redoc_url=None, openapi_url=None)
    registry = CollectorRegistry(auto_describe=False)
    ProcessCollector(registry=registry)  # process_resident_memory_bytes and friends
    registry.register(_KpiCollector(store, times, sweeps))
    requests = Counter("selfheal_webhook_requests", "webhook requests by endpoint and HTTP "
                       "status", ["endpoint", "code"], registry=registry)
    alerts = Counter("selfheal_alerts_received", "alerts in accepted webhook requests, by "
                     "what became of them", ["endpoint", "result"], registry=registry)
    expected = f"Bearer {token}".encode()

    async def receive(request: Request, endpoint: Endpoint) -> Response:
        response = await _handle(request, endpoint)
        requests.labels(endpoint, str(response.status_code)).inc()
        return response

    async def _handle(request: Request, endpoint: Endpoint) -> Response:
        given = request.headers.get("authorization", "").encode()
        if not hmac.compare_digest(given, expected):
            log.warning("webhook refused: missing or wrong bearer token", extra={
                "endpoint": endpoint, "client": request.client.host if request.client else ""})
            return JSONResponse({"error": "missing or wrong bearer token"}, status_code=401,
                                headers={"WWW-Authenticate": "Bearer"})
        try:
            body = await _body(request, max_body_bytes)
        except _TooLarge:
            return JSONResponse({"error": f"body over {max_body_bytes} bytes; raise "
                                 "serve.max_body_bytes or lower the group size"},
                                status_code=413)
        try:
            payload = WebhookPayload.model_validate_json(body)
        except ValidationError as exc:
            problems = [f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}"
                        for e in exc.errors(include_input=False)[:20]]
            return JSONResponse({"error": "not an Alertmanager webhook payload (version 4)",
                                 "problems": problems}, status_code=422)
        try:
            got = await run_in_threadpool(intake.receive, payload, endpoint)
        except StoreUnavailable as exc:  # Alertmanager retries a 5xx: nothing is lost
            log.error("alert intake failed: store unavailable", extra={"error": str(exc)})
            return JSONResponse({"error": "store unavailable; retry"}, status_code=503)
        for result, count in (("accepted", got.accepted), ("duplicate", got.duplicates),
                              ("refused", len(got.refused))):
            if count:
                alerts.labels(endpoint, result).inc(count)
        body_out = {"accepted": got.accepted, "duplicates": got.duplicates,
                    "refused": list(got.refused), "sweep": got.sweep,
                    "root_causes": [{"host": r.host, "fault": r.fault, "subject": r.subject,
                                     "alerts": r.alerts}
                                    for r in got.root_causes]}
        # every alert named a host outside the inventory: a routing mistake someone must see
        everything_refused = bool(got.refused) and not got.accepted and not got.duplicates
        return JSONResponse(body_out, status_code=422 if everything_refused else 200)

    @app.post("/api/v1/alert/immediate")
    async def immediate(request: Request) -> Response:
        return await receive(request, "immediate")

    @app.post("/api/v1/alert/batch")
    async def batch(request: Request) -> Response:
        return await receive(request, "batch")

    @app.get("/healthz")
    def healthz() -> Response:
        last = times()
        success = last.last_success if last else None
        body = {"status": "ok" if alive() else "sweep loop stopped",
                "last_successful_sweep_age_s": None if success is None
                else round(time.time() - success, 3)}
        return JSONResponse(body, status_code=200 if alive() else 503)

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return app
