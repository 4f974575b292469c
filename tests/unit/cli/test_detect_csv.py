"""``selfheal detect-csv``: scores, columns, errors naming the file, row and column."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from orchestrator.cli.common import State
from orchestrator.cli.detect import detect_csv
from orchestrator.config import PROJECT_ROOT

runner = CliRunner()


def _app() -> typer.Typer:
    app = typer.Typer()
    app.command("detect-csv")(detect_csv)

    @app.command("other")
    def _other() -> None:  # a second command keeps "detect-csv" a subcommand
        pass

    return app


def _write(path: Path, n: int = 600, spike: int | None = 500, columns: int = 1) -> Path:
    rng = np.random.default_rng(3)
    frame = pd.DataFrame({"timestamp": pd.date_range("2024-01-01", periods=n, freq="5min")
                         .strftime("%Y-%m-%d %H:%M:%S")})
    for j in range(columns):
        v = 50 + rng.normal(0, 1, n)
        if spike is not None and j == 0:
            v[spike] += 40
        frame["value" if j == 0 else f"value{j + 1}"] = v
    frame.to_csv(path, index=False)
    return path


def test_scores_every_row_and_flags_the_spike(tmp_path: Path) -> None:
    src, out = _write(tmp_path / "in.csv"), tmp_path / "out.csv"
    result = runner.invoke(_app(), ["detect-csv", str(src), "--out", str(out)])
    assert result.exit_code == 0, result.output
    scored = pd.read_csv(out)
    original = pd.read_csv(src)
    assert list(scored.columns) == ["timestamp", "value", "anomaly_score", "is_anomaly"]
    assert len(scored) == len(original)
    assert scored["anomaly_score"].between(0, 1).all()
    assert set(scored["is_anomaly"].unique()) <= {0, 1}
    assert scored["is_anomaly"].iloc[500:503].max() == 1
    assert ((scored["anomaly_score"] > 0.5) == (scored["is_anomaly"] == 1)).all()


def test_several_value_columns_and_json_summary(tmp_path: Path) -> None:
    src, out = _write(tmp_path / "in.csv", columns=3), tmp_path / "o.csv"
    result = runner.invoke(_app(), ["detect-csv", str(src), "--out", str(out), "--json"])
    assert result.exit_code == 0
    assert '"rows": 600' in result.output
    assert len(pd.read_csv(out).columns) == 6


def test_bad_value_names_file_row_and_column(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("timestamp,value\n2024-01-01 00:00:00,1\n2024-01-01 00:05:00,oops\n")
    result = runner.invoke(_app(), ["detect-csv", str(bad)])
    assert result.exit_code == 2
    assert "bad.csv: row 3, column 'value'" in result.output


def test_missing_timestamp_column(tmp_path: Path) -> None:
    nots = tmp_path / "a.csv"
    nots.write_text("time,value\n1,2\n")
    result = runner.invoke(_app(), ["detect-csv", str(nots)])
    assert result.exit_code == 2 and "no 'timestamp' column" in result.output


def _clock_change(path: Path) -> Path:
    """Five-minute samples over a night whose clock went back at 03:00: 02:00-02:55 twice."""
    first = pd.date_range("2024-10-27 00:00", "2024-10-27 02:55", freq="5min")
    again = pd.date_range("2024-10-27 02:00", "2024-10-27 05:00", freq="5min")
    stamps = [*first.strftime("%Y-%m-%d %H:%M:%S"), *again.strftime("%Y-%m-%d %H:%M:%S")]
    rng = np.random.default_rng(5)
    pd.DataFrame({"timestamp": stamps, "value": 50 + rng.normal(0, 1, len(stamps))}
                 ).to_csv(path, index=False)
    return path


def test_a_repeated_hour_is_scored_in_file_order_with_a_warning_naming_the_row(
        tmp_path: Path) -> None:
    src, out = _clock_change(tmp_path / "dst.csv"), tmp_path / "out.csv"
    result = runner.invoke(_app(), ["detect-csv", str(src), "--out", str(out)])
    assert result.exit_code == 0, result.output
    # 36 rows 00:00-02:55 are rows 2-37 of the file; row 38 goes back to 02:00
    assert "warning:" in result.stderr and "row 38" in result.stderr
    assert "earlier than row 37" in result.stderr and "file order" in result.stderr
    scored = pd.read_csv(out)
    assert list(scored["timestamp"]) == list(pd.read_csv(src)["timestamp"])  # not re-sorted
    assert scored["anomaly_score"].notna().all()


def test_a_repeated_hour_warning_is_in_the_json_summary(tmp_path: Path) -> None:
    src = _clock_change(tmp_path / "dst.csv")
    result = runner.invoke(_app(), ["detect-csv", str(src), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["rows"] == 73
    (warning,) = summary["warnings"]
    assert "row 38" in warning and "file order" in warning


def test_every_input_error_honours_json(tmp_path: Path) -> None:
    files = {"missing.csv": None, "empty.csv": "", "nots.csv": "time,value\n1,2\n",
             "novalue.csv": "timestamp\n1\n", "rows.csv": "timestamp,value\n",
             "badtime.csv": "timestamp,value\nyesterday,1\n",
             "badvalue.csv": "timestamp,value\n1,oops\n"}
    for name, text in files.items():
        path = tmp_path / name
        if text is not None:
            path.write_text(text)
        result = runner.invoke(_app(), ["detect-csv", str(path), "--json"])
        assert result.exit_code == 2, (name, result.output)
        error = json.loads(result.stdout)
        assert set(error) == {"error", "message"}, name
        assert error["error"] == "CsvError" and name in error["message"]


def test_an_unwritable_output_honours_json(tmp_path: Path) -> None:
    src = _write(tmp_path / "in.csv", n=50, spike=None)
    result = runner.invoke(_app(), ["detect-csv", str(src), "--out",
                                    str(tmp_path / "no" / "such" / "dir.csv"), "--json"])
    assert result.exit_code == 2, result.output
    error = json.loads(result.stdout)
    assert "cannot write" in error["message"] and "folder" in error["message"]


def test_an_error_message_is_printed_verbatim_not_as_markup(tmp_path: Path) -> None:
    odd = tmp_path / "odd.csv"
    odd.write_text("[red]when,value\n1,2\n")
    result = runner.invoke(_app(), ["detect-csv", str(odd)])
    assert result.exit_code == 2 and "[red]when" in result.output


def test_the_rules_baseline_overrides_reach_detect_csv(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    # detect-csv runs with the sweep's settings: detection.yml's `defaults: baseline:` applied.
    rules = tmp_path / "rules"
    shutil.copytree(PROJECT_ROOT / "rules", rules)
    detection = rules / "detection.yml"
    detection.write_text(detection.read_text().replace(
        "\ndefaults:\n",
        "\ndefaults:\n  baseline: {min_surprise: 1.0e9, min_surprise_fast: 1.0e9}\n", 1))
    monkeypatch.setenv("SELFHEAL_RULES__DIR", str(rules))
    monkeypatch.setattr(State, "_settings", None)
    src, out = _write(tmp_path / "in.csv"), tmp_path / "out.csv"
    result = runner.invoke(_app(), ["detect-csv", str(src), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert pd.read_csv(out)["is_anomaly"].sum() == 0  # the spike of the test above is not flagged
