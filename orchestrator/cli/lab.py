"""``selfheal lab up|status|inject|clear|down``: the lab fleet from the command line. No logic here.

Parses, calls ``orchestrator.lab``, prints (rich for humans, one JSON object with ``--json``).
Exit codes: 0 ok, 1 something in the lab is broken (status), 2 error (bad input, failed start).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from orchestrator import lab
from orchestrator.cli.common import (
    JSON_OPTION,
    NEEDS_HUMAN,
    OK,
    console,
    emit_json,
    err_console,
    handle_errors,
)
from orchestrator.lab.progress import ProgressFn

app = typer.Typer(help="The lab fleet: Debian hosts in systemd-nspawn on 127.0.1.N + Prometheus.")


@contextmanager
def _progress(quiet: bool) -> Iterator[ProgressFn | None]:
    """A rich progress bar fed by the lab's progress callback (nothing with --json)."""
    if quiet:
        yield None
        return
    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn())
    with Progress(*columns, console=err_console, transient=False) as bar:
        task = bar.add_task("starting", total=1.0)

        def update(message: str, fraction: float | None) -> None:
            # below 1.0 so the elapsed-time column keeps counting; None: an indeterminate pulse
            total = None if fraction is None else 1.0
            bar.update(task, description=message, total=total, completed=min(fraction or 0, 0.999))

        yield update


@app.command()
@handle_errors
def up(
    hosts: int = typer.Option(3, "--hosts", "-n", help="number of hosts (vps1..vpsN)"),
    json_output: bool = JSON_OPTION,
) -> None:
    """Build the image if needed, boot the hosts and Prometheus, wait until all answer."""
    with _progress(json_output) as progress:
        state = lab.up(hosts, progress)
    paths = lab.lab_paths()
    if json_output:
        emit_json(
            {**state.to_dict(), "inventory": paths.inventory, "settings": paths.settings_file}
        )
        raise typer.Exit(OK)
    table = Table("host", "address", "pid", "log")
    for host in state.hosts:
        table.add_row(host.name, host.address, str(host.pid), host.log)
    console.print(table)
    console.print(f"Prometheus {state.prometheus_url} (pid {state.prometheus_pid})")
    console.print(f"inventory {paths.inventory}; settings {paths.settings_file}", highlight=False)


@app.command()
@handle_errors
def status(json_output: bool = JSON_OPTION) -> None:
    """Check every host (nspawn, ssh, node_exporter, demo app) and Prometheus; 1 if any fails."""
    result = lab.status()
    code = OK if result.healthy else NEEDS_HUMAN
    if json_output:
        emit_json(result.to_dict())
        raise typer.Exit(code)
    mark = {True: "[green]yes[/]", False: "[red]no[/]"}
    table = Table("host", "address", "pid", "roles", "running", "checks")
    for h in result.hosts:
        table.add_row(
            h.name,
            h.address,
            str(h.pid or "-"),
            ", ".join(h.groups),
            mark[h.running],
            "  ".join(f"{name} {mark[ok]}" for name, ok in h.checks.items()),
        )
    console.print(table)
    prom = result.prometheus
    console.print(f"Prometheus {prom.url}: running {mark[prom.running]}, ready {mark[prom.ready]}")
    if not result.hosts:
        console.print("[yellow]no lab hosts: run 'selfheal lab up'[/]")
    raise typer.Exit(code)


@app.command()
@handle_errors
def inject(
    fault: str = typer.Argument(..., help=f"one of: {', '.join(sorted(lab.FAULTS))}"),
    host: str = typer.Argument(..., help="lab host name, e.g. vps1"),
    json_output: bool = JSON_OPTION,
) -> None:
    """Inject FAULT into HOST (e.g. service_crash vps2) and record when."""
    injection = lab.inject(fault, host)
    if json_output:
        emit_json(injection.to_dict())
    else:
        console.print(
            f"injected {injection.fault} into {injection.host} at {injection.injected_at:.3f}",
            highlight=False,
        )


@app.command()
@handle_errors
def clear(
    fault: str = typer.Argument(..., help=f"one of: {', '.join(sorted(lab.FAULTS))}"),
    host: str = typer.Argument(..., help="lab host name, e.g. vps1"),
    json_output: bool = JSON_OPTION,
) -> None:
    """Undo FAULT on HOST (e.g. disk_full vps3); clearing a fault that is not there is fine."""
    lab.clear(fault, host)
    if json_output:
        emit_json({"fault": fault, "host": host, "cleared": True})
    else:
        console.print(f"cleared {fault} on {host}", highlight=False)


@app.command()
@handle_errors
def down(json_output: bool = JSON_OPTION) -> None:
    """Stop every lab host and Prometheus; remove runtime files and generated files."""
    with _progress(json_output) as progress:
        lab.down(progress)
    if json_output:
        emit_json({"down": True})
    else:
        console.print("lab is down")
