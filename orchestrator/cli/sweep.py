"""``selfheal sweep``: one pass over the fleet (cron, systemd timer) or one every N seconds."""

from __future__ import annotations

import logging
import signal
import threading
import time
from contextlib import nullcontext

import typer

from orchestrator.cli.common import (
    JSON_OPTION,
    NEEDS_HUMAN,
    OK,
    State,
    console,
    emit_json,
    handle_errors,
)
from orchestrator.cli.report import actions_table, anomalies_table, hosts_table, sweep_json
from orchestrator.errors import SelfhealError, TemporaryError
from orchestrator.health import record_sweep
from orchestrator.store.lock import controller_lock
from orchestrator.wiring import controller_for

INVENTORY_REFRESH_S = 60.0
log = logging.getLogger(__name__)


@handle_errors
def sweep(
    dry_run: bool = typer.Option(False, "--dry-run", help="Ansible check mode only; no incident "
                                 "is written and no host is changed"),
    every: float = typer.Option(0.0, "--every", min=0, help="repeat every SECONDS until stopped"),
    json_output: bool = JSON_OPTION,
) -> None:
    """Observe, diagnose and heal the fleet. Exit 0 all healthy or healed, 1 something needs a
    human (or data is unknown), 2 error."""
    settings = State.settings()
    controller = controller_for(settings)
    built = time.monotonic()
    code = OK
    stop = threading.Event()
    if every:  # a service: finish the sweep in hand on SIGTERM or Ctrl-C, then exit
        controller.executor.prepare()  # pay Ansible's import once, before any fault
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        signal.signal(signal.SIGINT, lambda *_: stop.set())
    # one service per state dir; each sweep also takes the controller's act lock (engine)
    with controller_lock(settings.state.dir, name="service.lock") if every else nullcontext():
        while True:
            if time.monotonic() - built > INVENTORY_REFRESH_S:  # hosts come and go
                try:
                    controller, built = controller_for(settings), time.monotonic()
                except SelfhealError as exc:  # keep sweeping with what we had; say so
                    log.error("inventory or rules refresh failed; keeping the previous ones",
                              extra={"error": str(exc)})
                    built = time.monotonic()
            try:
                with console.status("sweeping the fleet", spinner="dots") if not json_output \
                        else nullcontext():
                    report = controller.sweep(dry_run=dry_run)
            except TemporaryError as exc:  # lock busy, store down: a service waits and goes on
                if not every:
                    raise
                log.error("sweep skipped; trying again", extra={"error": str(exc)})
                code = NEEDS_HUMAN
                if stop.wait(every):
                    break
                continue
            record_sweep(settings.health.textfile_path, report, controller.store)
            code = report.exit_code
            if json_output:
                emit_json(sweep_json(report))
            else:
                console.print(hosts_table(report))
                if report.actions:
                    console.print(actions_table(report))
                anomalies = anomalies_table(report)
                if anomalies is not None:
                    console.print(anomalies)
                if report.anomalies is not None and report.anomalies.fallback:
                    console.print(f"[yellow]detection:[/] {report.anomalies.model_status}",
                                  highlight=False)
                if report.source_error:
                    console.print(f"[yellow]unknown:[/] {report.source_error}", highlight=False)
                for line in report.refused:
                    console.print(f"[red]refused:[/] {line}", highlight=False)
            if not every or stop.wait(max(0.0, every - (report.finished_at -
                                                        report.started_at))):
                break
    raise typer.Exit(code)

