"""``selfheal detect-csv``: scores, columns, errors naming the file, row and column."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import typer
from typer.testing import CliRunner

from orchestrator.cli.detect import detect_csv

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


def test_missing_timestamp_column_and_unsorted_rows(tmp_path: Path) -> None:
    nots = tmp_path / "a.csv"
    nots.write_text("time,value\n1,2\n")
    result = runner.invoke(_app(), ["detect-csv", str(nots)])
    assert result.exit_code == 2 and "no 'timestamp' column" in result.output
    unsorted = tmp_path / "b.csv"
    unsorted.write_text("timestamp,value\n100,1\n50,2\n")
    result = runner.invoke(_app(), ["detect-csv", str(unsorted)])
    assert result.exit_code == 2 and "row 3" in result.output and "sort" in result.output
