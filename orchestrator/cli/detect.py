"""``selfheal detect-csv``: score a CSV offline with the sweep's own baseline detector.

Registered by the root app (``root.command("detect-csv")(detect_csv)``). Reads
``timestamp,value[,value2,...]``, runs every value column through
``orchestrator.core.detect.stream`` with the frozen defaults the sweep uses (``BaselineParams`` with
``rules/detection.yml``'s ``defaults: baseline:`` applied; causal: a row is judged only from the
rows before it; no labels, no per-file tuning) and writes the same rows plus ``anomaly_score``
(0..1, above 0.5 exactly on detections) and ``is_anomaly`` (0/1); with several value columns a row
takes the highest score of its columns.

Rows are scored in file order. A timestamp earlier than the row before (a clock change repeats
an hour; real exports have this) is scored where it stands, with a warning naming the rows.

Exit codes: 0 the file was scored (whether or not it holds anomalies), 2 the file could not be
read or the result not written (the message names the file, the row or column, and the fix;
with ``--json`` it is one JSON object with ``error`` and ``message``).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape

from orchestrator.cli.common import (
    JSON_OPTION,
    OK,
    State,
    emit_json,
    err_console,
    handle_errors,
)
from orchestrator.errors import PermanentError

MAX_ROWS_NAMED = 5


class CsvError(PermanentError):
    """A CSV that cannot be scored or written; the message names the file, the place and the fix."""


def backwards_rows(path: Path, raw: Any, times: Any) -> list[str]:
    """One warning naming the rows whose time is earlier than the row before, or none."""
    import numpy as np

    back = np.nonzero(np.diff(times) < 0)[0] + 1  # 0-based data rows; file row = i + 2
    if not len(back):
        return []
    named = "; ".join(f"row {i + 2} ({raw.iloc[i]}) is earlier than row {i + 1} "
                      f"({raw.iloc[i - 1]})" for i in back[:MAX_ROWS_NAMED])
    more = f"; and {len(back) - MAX_ROWS_NAMED} more" if len(back) > MAX_ROWS_NAMED else ""
    return [f"{path}: time goes back {len(back)} time(s): {named}{more}. Scored in file order "
            "(a clock change repeats an hour); sort the file by time if that is not what it is"]


def read_series(path: Path):
    """Read and check a ``timestamp,value...`` CSV; returns the frame, times (s), values and
    warnings."""
    import numpy as np
    import pandas as pd

    if not path.is_file():
        raise CsvError(f"{path}: no such file; pass the path of a CSV with timestamp,value")
    try:
        frame = pd.read_csv(path)
    except Exception as exc:  # pandas raises several parser errors
        raise CsvError(f"{path}: not a readable CSV ({exc}); write a header line "
                       "'timestamp,value' and one row per sample") from exc
    if "timestamp" not in frame.columns:
        raise CsvError(f"{path}: row 1 (header): no 'timestamp' column (found "
                       f"{list(frame.columns)[:6]}); name the time column 'timestamp'")
    value_cols = [c for c in frame.columns if c not in ("timestamp", "label", "anomaly_score",
                                                        "is_anomaly")]
    if not value_cols:
        raise CsvError(f"{path}: row 1 (header): no value column; add at least one, e.g. "
                       "'timestamp,value'")
    if frame.empty:
        raise CsvError(f"{path}: no data rows; add rows after the header")
    raw = frame["timestamp"]
    if pd.api.types.is_numeric_dtype(raw):
        times = raw.to_numpy(float)
        bad = np.isnan(times)
    else:
        parsed = pd.to_datetime(raw, errors="coerce", utc=True)
        bad = parsed.isna().to_numpy()
        times = ((parsed - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(seconds=1)).to_numpy(float)
    if bad.any():
        row = int(np.argmax(bad))
        raise CsvError(f"{path}: row {row + 2}, column 'timestamp': {raw.iloc[row]!r} is not a "
                       "time; write ISO 8601 ('2024-05-01 12:00:00') or UNIX seconds")
    values = np.empty((len(frame), len(value_cols)))
    for j, col in enumerate(value_cols):
        numeric = pd.to_numeric(frame[col], errors="coerce")
        wrong = numeric.isna() & frame[col].notna()
        if wrong.any():
            row = int(np.argmax(wrong.to_numpy()))
            raise CsvError(f"{path}: row {row + 2}, column {col!r}: {frame[col].iloc[row]!r} is "
                           "not a number; write a number or leave the cell empty (missing)")
        values[:, j] = numeric.to_numpy(float)
    return frame, times, values, backwards_rows(path, raw, times)


@handle_errors
def detect_csv(
    file: Path = typer.Argument(..., help="CSV with timestamp,value[,value2...]"),
    out: Path | None = typer.Option(None, "--out", "-o",
                                    help="write the scored CSV here (default: stdout)"),
    json_output: bool = JSON_OPTION,
) -> None:
    """Score FILE causally with the frozen defaults; add anomaly_score and is_anomaly."""
    import numpy as np

    from orchestrator.core.detect.stream import score_series
    from orchestrator.detection import load_detection_rules

    # The sweep's own settings (rules/detection.yml's `defaults: baseline:` applied).
    params = load_detection_rules(State.settings()).defaults.baseline_params()
    frame, times, values, warnings = read_series(file)
    for warning in warnings:
        err_console.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False)
    scores, flags, _ = score_series(times, values, params)
    result = frame.copy()
    result["anomaly_score"] = np.round(scores.max(axis=1), 6)
    result["is_anomaly"] = flags.any(axis=1).astype(int)
    anomalies = int(result["is_anomaly"].sum())
    if out is None:
        if json_output:
            emit_json({"file": str(file), "rows": len(result), "anomalies": anomalies,
                       "rows_flagged": [int(i) + 2 for i in
                                        np.nonzero(result["is_anomaly"].to_numpy())[0]],
                       "warnings": warnings})
        else:
            result.to_csv(sys.stdout, index=False)
        raise typer.Exit(OK)
    try:
        result.to_csv(out, index=False)
    except OSError as exc:
        raise CsvError(f"cannot write {out}: {exc.strerror or exc}; check the folder exists and "
                       "is writable") from exc
    if json_output:
        emit_json({"file": str(file), "out": str(out), "rows": len(result),
                   "anomalies": anomalies, "warnings": warnings})
    else:
        err_console.print(f"{escape(str(file))}: {len(result)} rows, {anomalies} anomalies -> "
                          f"{escape(str(out))}", highlight=False)
    raise typer.Exit(OK)
