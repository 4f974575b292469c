"""``selfheal notify test``: send a test message to every notify target and say what arrived.

Run it after setting ``notify.urls`` (or ``notify.urls_file``) to prove the page would reach
someone. Targets are shown by where they were configured, never by URL (URLs hold tokens).
"""

from __future__ import annotations

import socket

import typer

from orchestrator.cli.common import ERROR, JSON_OPTION, OK, State, console, emit_json, handle_errors
from orchestrator.errors import ConfigError

app = typer.Typer(help="Notifications: check that a page reaches someone.", no_args_is_help=True)


@app.command("test")
@handle_errors
def test(json_output: bool = JSON_OPTION) -> None:
    """Send a test message to every notify target. Exit 0 all delivered, 2 any not delivered,
    unusable, or none configured."""
    from orchestrator.notify import Notifier

    notifier = Notifier.from_settings(State.settings().notify)
    if not notifier.targets and not notifier.problems:
        raise ConfigError("no notify targets configured: set notify.urls in selfheal.yml, "
                          "notify.urls_file, or SELFHEAL_NOTIFY__URLS='[\"jsons://...\"]'")
    deliveries = notifier.send(
        "selfheal: test notification",
        f"A test from selfheal on {socket.gethostname()} (selfheal notify test). Incidents "
        "that are escalated, awaiting approval, rolled back or held are sent here.", "info")
    delivered = bool(deliveries) and all(d.sent for d in deliveries) and not notifier.problems
    if json_output:
        emit_json({"delivered": delivered, "targets": deliveries,
                   "problems": list(notifier.problems)})
    else:
        for d in deliveries:
            mark = "[green]delivered[/]" if d.sent else f"[red]not delivered:[/] {d.reason}"
            console.print(f"{d.target}: {mark}", highlight=False)
        for problem in notifier.problems:
            console.print(f"[red]not used:[/] {problem}", highlight=False)
    raise typer.Exit(OK if delivered else ERROR)
