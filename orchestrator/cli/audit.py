"""``selfheal audit``: verify the hash-chained audit log, print it, or start a new chain."""

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
from orchestrator.store.audit import start_new_chain
from orchestrator.store.db import recorded_history
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


@app.command("init-key")
@handle_errors
def init_key(json_output: bool = JSON_OPTION) -> None:
    """Start a new audit chain with a new key: only for a database with no records. An old key
    and its marker are moved aside (renamed), never deleted."""
    settings = State.settings()
    settings.state.dir.mkdir(parents=True, exist_ok=True)
    path = settings.state.audit_key_path
    moved = start_new_chain(path, recorded_history(settings.state.database_url))
    if json_output:
        emit_json({"ok": True, "key": str(path), "moved_aside": [str(m) for m in moved]})
    else:
        console.print(f"new audit chain: key {path}", highlight=False)
        for old in moved:
            console.print(f"  kept the old file as {old}", highlight=False)
    raise typer.Exit(OK)
