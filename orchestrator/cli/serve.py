"""``selfheal serve``: Alertmanager's webhook receiver with the periodic sweep running inside it."""

from __future__ import annotations

import logging
import signal
import threading

import typer

from orchestrator.cli.common import ERROR, OK, State, handle_errors
from orchestrator.errors import ConfigError

log = logging.getLogger(__name__)


@handle_errors
def serve(
    listen: str | None = typer.Option(None, "--listen", help="HOST:PORT (default serve.listen, "
                                      "127.0.0.1:8080)"),
) -> None:
    """Sweep every serve.sweep_every_s seconds and at once when Alertmanager posts an alert
    (POST /api/v1/alert/immediate or /api/v1/alert/batch, bearer token); GET /healthz,
    /metrics. Stops on SIGTERM after the sweep in hand. Exit 0 stopped, 2 error."""
    import uvicorn

    from orchestrator.api import create_app
    from orchestrator.config import ServeSettings
    from orchestrator.intake import Intake
    from orchestrator.service import SweepLoop
    from orchestrator.store.lock import controller_lock
    from orchestrator.wiring import controller_for, store_for

    settings = State.settings()
    where = listen or settings.serve.listen
    try:
        ServeSettings(listen=where)
    except ValueError as exc:
        raise ConfigError(f"--listen {where!r}: write HOST:PORT, e.g. 127.0.0.1:8080") from exc
    host, _, port = where.rpartition(":")
    token = settings.serve.bearer_token()
    store = store_for(settings)
    loop = SweepLoop(settings, lambda: controller_for(settings, store=store),
                     settings.serve.sweep_every_s, recheck_s=settings.serve.alert_recheck_s)
    intake = Intake(store, lambda: loop.controller.inventory,
                    lambda: loop.controller.rules.faults, loop.wake, settings.serve.batch_window_s)
    failed: list[BaseException] = []
    server: uvicorn.Server | None = None

    def sweeping() -> None:
        try:
            loop.run()
        except BaseException as exc:  # the loop is the service's point: stop serving
            log.exception("sweep loop stopped; serve exits")
            failed.append(exc)
            if server is not None:
                server.should_exit = True

    thread = threading.Thread(target=sweeping, name="sweep-loop", daemon=True)
    app = create_app(intake, store, token, settings.serve.max_body_bytes,
                     alive=thread.is_alive, times=lambda: loop.times,
                     sweeps=lambda: dict(loop.sweeps))
    server = uvicorn.Server(uvicorn.Config(app, host=host.strip("[]"), port=int(port),
                                           log_config=None, access_log=False,
                                           lifespan="off"))
    # one service per state dir (as `sweep --every`); each sweep takes the act lock too
    with controller_lock(settings.state.dir, name="service.lock"):
        thread.start()
        # uvicorn re-raises the signal that stopped it once it has shut down; with these
        # handlers that stops the loop (after the sweep in hand) instead of killing the process
        signal.signal(signal.SIGTERM, lambda *_: loop.stop())
        signal.signal(signal.SIGINT, lambda *_: loop.stop())
        log.info("serving", extra={"listen": where, "sweep_every_s": loop.every})
        try:
            server.run()  # until SIGTERM / Ctrl-C (uvicorn's handlers), or the loop failing
        except SystemExit as exc:  # uvicorn exits when it cannot listen (address in use)
            failed.append(exc)
        loop.stop()
        intake.close()
        thread.join(timeout=settings.ansible.timeout_s + 30)
    raise typer.Exit(ERROR if failed or not server.started else OK)
