"""``selfheal audit``: verify the hash-chained audit log, or print it."""

from __future__ import annotations

import typer

from orchestrator.cli.common import (
    JSON_OPTION,
    NEEDS_HUMAN,
    OK,
    State,
    console,
    emit_json,
    handle_errors,
    to_jsonable,
    when,
)
from orchestrator.errors import AuditChainError
from orchestrator.wiring import store_for

app = typer.Typer(help="The tamper-evident audit log.")


@app.command("verify")
@handle_errors
def verify(json_output: bool = JSON_OPTION) -> None:
    """Check every link of the chain. Exit 0 intact, 1 tampered (edited, deleted, reordered)."""
    store = store_for(State.settings())
    try:
        count = store.verify_audit()
    except AuditChainError as exc:
        if json_output:
            emit_json({"ok": False, "error": str(exc)})
        else:
            console.print(f"[bold red]audit chain broken:[/] {exc}", highlight=False)
        raise typer.Exit(NEEDS_HUMAN) from exc
    if json_output:
        emit_json({"ok": True, "records": count})
    else:
        console.print(f"audit chain intact: {count} records")
    raise typer.Exit(OK)


@app.command("log")
@handle_errors
def log(limit: int = typer.Option(50, min=1), json_output: bool = JSON_OPTION) -> None:
    """The newest audit records."""
    records = list(store_for(State.settings()).audit_records())[-limit:]
    if json_output:
        emit_json({"records": [to_jsonable(r) for r in records]})
    else:
        for r in records:
            console.print(f"{r.seq:>6} {when(r.at)} {r.actor} {r.action} {r.subject}",
                          highlight=False)
    raise typer.Exit(OK)
