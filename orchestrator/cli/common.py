"""Shared CLI plumbing: exit codes, JSON/rich output, error mapping and wiring.

Exit codes (documented in README): 0 ok (all healthy or healed), 1 something needs a human
(unknown data, escalation, approval, refused), 2 error (bad input, bad config, failure to run).
"""

from __future__ import annotations

import functools
import json
import logging
import math
import sys
from collections.abc import Callable, Mapping
from dataclasses import fields, is_dataclass
from enum import Enum
from pathlib import Path
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from orchestrator.config import Settings, load_settings
from orchestrator.errors import SelfhealError

OK, NEEDS_HUMAN, ERROR = 0, 1, 2
# Piped output (cron mail, journald, CI logs) gets wide tables instead of 80 truncated columns.
console = Console(stderr=False, width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True, soft_wrap=True)
F = TypeVar("F", bound=Callable[..., Any])

JSON_OPTION = typer.Option(False, "--json", help="print one JSON object for scripts")


class State:
    """Options of the root command, shared by every subcommand."""

    config: Path | None = None
    _settings: Settings | None = None

    @classmethod
    def settings(cls) -> Settings:
        if cls._settings is None:
            cls._settings = load_settings(cls.config)
        return cls._settings


def to_jsonable(value: Any) -> Any:
    """Plain JSON data from records, enums and mappings, walking each field.

    Not ``dataclasses.asdict``: it deep-copies every field, and the records' frozen label
    mappings (``MappingProxyType``) cannot be copied, so a sweep with findings would crash.
    NaN and infinities (an unknown sample) become null: JSON has no such numbers.
    """
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [to_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(to_jsonable(data), indent=2, default=str, allow_nan=False) + "\n")


def handle_errors(fn: F) -> F:
    """Map selfheal errors to exit code 2 with a clear message (JSON when --json was given)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except SelfhealError as exc:
            if kwargs.get("json_output"):
                emit_json({"error": type(exc).__name__, "message": str(exc)})
            else:
                err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
            raise typer.Exit(ERROR) from exc
        except (typer.Exit, KeyboardInterrupt):
            raise
        except Exception as exc:  # a bug or an environment failure: still exit 2, never 1
            logging.getLogger(fn.__module__).exception("unexpected error")
            if kwargs.get("json_output"):
                emit_json({"error": type(exc).__name__, "message": str(exc)})
            else:
                err_console.print(f"[bold red]unexpected error:[/] {type(exc).__name__}: "
                                  f"{escape(str(exc))}", highlight=False)
            raise typer.Exit(ERROR) from exc

    return wrapper  # type: ignore[return-value]


def when(ts: float | None) -> str:
    if ts is None:
        return "-"
    import time

    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))
