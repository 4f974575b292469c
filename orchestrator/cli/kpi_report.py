"""``selfheal report [--since 7d] [--html FILE]``: the KPIs of /metrics, in the terminal or a page.

The figures are ``orchestrator.kpi.Kpis`` over the incidents opened since then (docs/serve.md
defines each); the plot is incidents opened per day (per hour for a window under two days).
"""

from __future__ import annotations

import html
import math
import re
import statistics
import time
from collections import Counter
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from orchestrator.cli.common import JSON_OPTION, OK, State, console, emit_json, handle_errors
from orchestrator.errors import TargetError

_SPAN = re.compile(r"^(\d+(?:\.\d+)?)([smhdw])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}


def parse_since(text: str) -> float:
    """``"7d"`` -> seconds; TargetError naming the form otherwise."""
    match = _SPAN.match(text.strip())
    if match is None or float(match.group(1)) <= 0:
        raise TargetError(f"--since {text!r}: write a positive span such as 30m, 24h, 7d or 2w")
    return float(match.group(1)) * _UNIT_S[match.group(2)]


def _stats(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"count": 0, "mean": None, "median": None, "p90": None}
    ordered = sorted(values)
    return {"count": len(values), "mean": round(statistics.mean(values), 2),
            "median": round(statistics.median(values), 2),
            "p90": round(ordered[min(len(ordered) - 1, math.ceil(0.9 * len(ordered)) - 1)], 2)}


def figures(since_s: float, now: float) -> dict[str, Any]:
    from orchestrator.kpi import Kpis
    from orchestrator.wiring import store_for

    store = store_for(State.settings())
    since = now - since_s
    k = Kpis.from_store(store, since)
    bucket = 86_400 if since_s >= 2 * 86_400 else 3600
    opened = Counter(int((i.detected_at - since) // bucket)
                     for i in store.all_incidents() if i.detected_at >= since)
    slots = math.ceil(since_s / bucket)
    ratio = k.success_ratio
    return {
        "since": since, "now": now, "bucket_s": bucket,
        "opened": [opened.get(n, 0) for n in range(slots)],
        "outcomes": [{"fault": f, "outcome": o, "incidents": n}
                     for (f, o), n in sorted(k.outcomes.items())],
        "success_ratio": None if math.isnan(ratio) else round(ratio, 3),
        "time_to_heal_s": _stats([v for vs in k.heal_s.values() for v in vs]),
        "time_to_detect_s": _stats([v for vs in k.detect_s.values() for v in vs]),
        "false_positives": sum(k.false_positives.values()),
        "human_interventions": dict(k.interventions),
        "rollbacks": dict(k.rollbacks),
        "open_now": {s: n for s, n in k.active.items() if n},
    }


def _bars(counts: list[int], width: int = 40) -> list[str]:
    top = max(counts, default=0) or 1
    return ["█" * round(width * c / top) + f" {c}" for c in counts]


def _print(f: dict[str, Any]) -> None:
    unit = "day" if f["bucket_s"] == 86_400 else "hour"
    table = Table(title="selfheal KPIs", show_header=True)
    table.add_column("figure")
    table.add_column("value")
    ratio = f["success_ratio"]
    table.add_row("self-healing success rate", "-" if ratio is None else f"{ratio:.0%}")
    for name in ("time_to_heal_s", "time_to_detect_s"):
        s = f[name]
        table.add_row(name.replace("_", " ").removesuffix(" s") + " (s)",
                      f"n={s['count']} mean={s['mean']} median={s['median']} p90={s['p90']}")
    table.add_row("false positives", str(f["false_positives"]))
    table.add_row("human interventions", ", ".join(f"{k} {v}" for k, v in
                                                   f["human_interventions"].items()))
    table.add_row("rollbacks", ", ".join(f"{k} {v}" for k, v in f["rollbacks"].items() if v)
                  or "0")
    table.add_row("open now", ", ".join(f"{k} {v}" for k, v in f["open_now"].items()) or "none")
    console.print(table)
    outcomes = Table(title="incidents ended, by fault and outcome")
    for column in ("fault", "outcome", "incidents"):
        outcomes.add_column(column)
    for row in f["outcomes"]:
        outcomes.add_row(row["fault"], row["outcome"], str(row["incidents"]))
    console.print(outcomes)
    console.print(f"incidents opened per {unit}, oldest first:")
    for line in _bars(f["opened"]):
        console.print(f"  {line}", highlight=False)


def _page(f: dict[str, Any]) -> str:
    esc = html.escape
    rows = "".join(f"<tr><td>{esc(r['fault'])}</td><td>{esc(r['outcome'])}</td>"
                   f"<td>{r['incidents']}</td></tr>" for r in f["outcomes"])
    top = max(f["opened"], default=0) or 1
    bars = "".join(f'<rect x="{i * 12}" y="{100 - 100 * c / top:.1f}" width="10" '
                   f'height="{100 * c / top:.1f}"><title>{c}</title></rect>'
                   for i, c in enumerate(f["opened"]))
    facts = "".join(f"<tr><th>{esc(k)}</th><td>{esc(str(v))}</td></tr>" for k, v in f.items()
                    if k not in ("outcomes", "opened", "since", "now", "bucket_s"))
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>selfheal KPIs</title>"
            f"</head><body><h1>selfheal KPIs</h1><p>since {esc(time.ctime(f['since']))}</p>"
            f"<table>{facts}</table><h2>incidents ended</h2><table><tr><th>fault</th>"
            f"<th>outcome</th><th>incidents</th></tr>{rows}</table><h2>incidents opened</h2>"
            f"<svg width='{12 * len(f['opened'])}' height='100'>{bars}</svg></body></html>")


@handle_errors
def report(since: str = typer.Option("7d", "--since", help="window: 30m, 24h, 7d, 2w"),
           html_out: Path | None = typer.Option(None, "--html", help="also write a page"),
           json_output: bool = JSON_OPTION) -> None:
    """The KPIs (success rate, time to detect and heal, false positives, interventions,
    rollbacks, outcomes) over incidents opened in the window, with incidents per day."""
    f = figures(parse_since(since), time.time())
    if html_out is not None:
        html_out.write_text(_page(f))
    if json_output:
        emit_json(f)
    else:
        _print(f)
        if html_out is not None:
            console.print(f"wrote {html_out}", highlight=False)
    raise typer.Exit(OK)
