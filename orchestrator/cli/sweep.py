"""``selfheal sweep``: one pass over the fleet (cron, systemd timer) or one every N seconds."""

from __future__ import annotations

import signal
from contextlib import nullcontext

import typer

from orchestrator.cli.common import (
    JSON_OPTION,
    NEEDS_HUMAN,
    State,
    console,
    emit_json,
    handle_errors,
)
from orchestrator.cli.report import actions_table, anomalies_table, hosts_table, sweep_json
from orchestrator.engine import SweepReport
from orchestrator.service import SweepLoop
from orchestrator.store.lock import controller_lock
from orchestrator.wiring import controller_for


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

    def show(report: SweepReport) -> None:
        if json_output:
            emit_json(sweep_json(report))
            return
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

    loop = SweepLoop(settings, lambda: controller_for(settings), every, dry_run,
                     on_report=show if every else None)
    if not every:
        with console.status("sweeping the fleet", spinner="dots") if not json_output \
                else nullcontext():
            report = loop.once()
        show(report)
        raise typer.Exit(report.exit_code)
    # a service: finish the sweep in hand on SIGTERM or Ctrl-C, then exit
    signal.signal(signal.SIGTERM, lambda *_: loop.stop())
    signal.signal(signal.SIGINT, lambda *_: loop.stop())
    # one service per state dir; each sweep also takes the controller's act lock (engine)
    with controller_lock(settings.state.dir, name="service.lock"):
        loop.run()
    raise typer.Exit(NEEDS_HUMAN if loop.skipped or loop.last is None else loop.last.exit_code)
