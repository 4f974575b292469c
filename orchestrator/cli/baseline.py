"""``selfheal baseline train|status``: the learned detection models as artefacts.

Registered by the root app (``app.add_typer(baseline.app, name="baseline")``). ``train`` reads the
history window from Prometheus (one range query per signal of ``rules/detection.yml``, through
``orchestrator.sources.features``), masks out the incident windows of the store, replays the rest
through ``orchestrator.core.detect.train_detector`` (which also leaves out what the detector itself
flags; seasonal baselines per host and signal, then the IsolationForest), and saves the model
with its metadata (when, which window, which hosts, library versions) under
``<state.dir>/baselines``. The sweep (``orchestrator.detection``) loads
it. ``train`` is meant for a daily timer (``docs/systemd/selfheal-baseline.timer``); ``status``
says what a sweep would load.

Exit codes: 0 ok, 1 needs a human (``status``: model missing, stale or unreadable), 2 error
(Prometheus unreachable, no data, invalid rules or settings; the message names the fix).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import typer

from orchestrator.cli.common import (
    JSON_OPTION,
    NEEDS_HUMAN,
    OK,
    State,
    console,
    emit_json,
    err_console,
    handle_errors,
)
from orchestrator.config import Settings
from orchestrator.errors import InventoryError, PermanentError
from orchestrator.sources.prometheus import connect_range

app = typer.Typer(help="Train and inspect the learned detection baselines.", no_args_is_help=True)

MAX_POINTS = 10_000  # Prometheus refuses range queries of more than 11,000 points per series
INCIDENT_PAD_S = 3600.0  # a fault starts before it is detected and settles after it is resolved


class NoData(PermanentError):
    """Prometheus answered but holds no usable history for the window."""


def _address_of(settings: Settings) -> tuple[dict[str, str], str | None]:
    """Inventory host name -> Prometheus host part, or ({}, why) when the inventory is unusable."""
    from orchestrator.wiring import inventory_for

    try:
        by_address = inventory_for(settings).by_prometheus_host()
    except (InventoryError, OSError) as exc:
        return {}, f"inventory not read ({exc}); incident hosts matched by Prometheus host part"
    return {host: address for address, host in by_address.items()}, None


def incident_mask(settings: Settings, times: Any, hosts: Sequence[str], now: float
                  ) -> tuple[Any, int, list[str]]:
    """(rows x hosts) True outside incident windows; the count of incidents; notes."""
    import numpy as np

    from orchestrator.core.detect.fleet import MASK_PAD_S
    from orchestrator.wiring import store_for

    incidents = store_for(settings).incidents(limit=100_000)
    address_of, note = _address_of(settings)
    column = {h: i for i, h in enumerate(hosts)}
    clean = np.ones((len(times), len(hosts)), dtype=bool)
    used = 0
    for inc in incidents:
        i = column.get(address_of.get(inc.host, inc.host))
        if i is None:
            continue
        # a fault lasts until resolved, or for escalated/rolled-back/suppressed ones until it
        # cleared; one still going masks everything up to now
        end = inc.resolved_at or inc.cleared_at or now
        hit = (times >= inc.detected_at - MASK_PAD_S) & (times <= end + MASK_PAD_S)
        if hit.any():
            clean[hit, i] = False
            used += 1
    return clean, used, [note] if note else []


@app.command("train")
@handle_errors
def train(
    days: float = typer.Option(7.0, "--days", min=0.001, help="history window, days"),
    step: float = typer.Option(60.0, "--step", min=1.0, help="seconds between points"),
    json_output: bool = JSON_OPTION,
) -> None:
    """Fit the per-host baselines and the IsolationForest on the last DAYS and save them.
    Exit 0 saved, 2 error (Prometheus down, no data, bad rules)."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from orchestrator.core.detect.fleet import replays, train_detector
    from orchestrator.detection import BASELINE_NAME, baseline_dir, load_detection_rules
    from orchestrator.sources.features import as_arrays, fleet_features
    from orchestrator.store.baselines import save_baseline

    settings = State.settings()
    rules = load_detection_rules(settings)
    now = time.time()
    end = float(int(now // step) * step)
    start = end - days * 86400.0
    inner = connect_range(settings.prometheus)
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/"
                  "{task.total}"), TimeRemainingColumn(), console=err_console,
                  disable=json_output) as progress:
        fetch = progress.add_task("querying Prometheus", total=len(rules.signals))

        def counted(*args: Any) -> list[dict[str, Any]]:
            result = inner(*args)
            progress.advance(fetch)
            return result

        frames = fleet_features(counted, rules, start, end, step_s=step)
        hosts = sorted({h for f in frames.values() for h in f.columns})
        if not hosts:
            raise NoData(f"Prometheus at {settings.prometheus.redacted_url} has no series for "
                         f"any signal of detection.yml between {time.ctime(start)} and "
                         f"{time.ctime(end)}; "
                         "check that the node targets are scraped and the PromQL matches them")
        times, values = as_arrays(frames, hosts)
        clean, incidents, notes = incident_mask(settings, times, hosts, now)
        replay = progress.add_task("learning baselines", total=replays() * len(times))
        detector = train_detector(rules, hosts, times, values, clean, step_s=step,
                                  progress=lambda done: progress.update(replay, completed=done))
    forest = detector.forest
    summary: dict[str, Any] = {
        "step_s": step, "rows": len(times), "excluded_points": int((~clean).sum()),
        "incidents_excluded": incidents,
        "self_masked_windows": len(detector.self_masked),
        "self_masked_points": int(sum(
            ((times >= a) & (times <= b)).sum() for _, a, b in detector.self_masked)),
        "signals": list(rules.all_signals),
        "detectors": list(detector.detectors),
        "forest": None if forest is None else {"rows": forest.rows,
                                               "threshold": round(forest.threshold, 4)},
    }
    path = save_baseline(baseline_dir(settings), BASELINE_NAME, detector, trained_at=now,
                         window=(start, end), hosts=hosts, extra=summary)
    if forest is None:
        notes.append("too little history after the warm-up for the forest; it is left out")
    if json_output:
        emit_json({"saved": str(path), "trained_at": now, "window": {"start": start, "end": end,
                   "days": days}, "hosts": len(hosts), **summary, "notes": notes})
    else:
        console.print(f"saved {path}: {len(hosts)} hosts, {len(times)} points of {step:g} s "
                      f"over {days:g} d, {summary['excluded_points']} points in "
                      f"{incidents} incident windows left out, "
                      f"{summary['self_masked_points']} points in "
                      f"{summary['self_masked_windows']} windows the detector flagged left out, "
                      "detectors "
                      f"{', '.join(detector.detectors)}", highlight=False)
        for note in notes:
            console.print(f"[yellow]note:[/] {note}", highlight=False)
    raise typer.Exit(OK)


@app.command("status")
@handle_errors
def status(json_output: bool = JSON_OPTION) -> None:
    """What a sweep would load: when trained, window, hosts, library versions, stale or not.
    Exit 0 usable, 1 missing, stale or unreadable (the sweep uses thresholds only)."""
    from orchestrator.detection import (
        BASELINE_NAME,
        baseline_dir,
        describe_baseline,
        load_detection_rules,
    )
    from orchestrator.store.baselines import load_baseline

    settings = State.settings()
    rules = load_detection_rules(settings)
    now = time.time()
    directory = baseline_dir(settings)
    max_age = rules.defaults.baseline_max_age_s
    _, st = load_baseline(directory, BASELINE_NAME, now=now, max_age_s=max_age, unpickle=False)
    meta = st.metadata
    trained = meta.get("trained_at")
    out = {
        "health": st.health.value, "usable": st.usable,
        "status": describe_baseline(st, directory, now), "directory": str(directory),
        "trained_at": trained, "age_h": round((now - trained) / 3600, 2) if trained else None,
        "max_age_h": round(max_age / 3600, 2), "stale": bool(trained and now - trained > max_age),
        "window": meta.get("window"), "hosts": len(meta.get("hosts", [])),
        "step_s": meta.get("step_s"), "detectors": meta.get("detectors"),
        "forest": meta.get("forest"), "versions": meta.get("versions"),
    }
    if json_output:
        emit_json(out)
    else:
        console.print(out["status"], highlight=False)
        if meta:
            console.print(f"  hosts {out['hosts']}, step {out['step_s']} s, detectors "
                          f"{meta.get('detectors')}, versions {meta.get('versions')}",
                          highlight=False)
    raise typer.Exit(OK if st.usable else NEEDS_HUMAN)
