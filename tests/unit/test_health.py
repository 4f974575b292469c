"""selfheal's own health textfile: values, carry-over of the last success, atomic, never fatal.

The file is read back with prometheus_client's exposition parser and checked with
``promtool check metrics`` (the same linter node_exporter's textfile format is held to).
"""

from __future__ import annotations

import logging
import subprocess
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from orchestrator.config import HealthSettings
from orchestrator.health import SweepHealth, write_textfile
from orchestrator.kpi import Kpis

PROMTOOL = "/usr/bin/promtool"


def samples(path: Path) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(path.read_text())
            for s in family.samples}


def health(finished: float, answered: bool = True) -> SweepHealth:
    return SweepHealth(started_at=finished - 2.5, finished_at=finished, source_answered=answered,
                       kpis=Kpis(active={"escalated": 2, "awaiting_approval": 1},
                                 runs={"succeeded": 5, "failed": 1}))


def test_values_are_written_in_the_exposition_format(tmp_path: Path) -> None:
    path = tmp_path / "selfheal.prom"
    write_textfile(path, health(1000.0))
    got = samples(path)
    assert got[("selfheal_last_sweep_timestamp_seconds", ())] == 1000.0
    assert got[("selfheal_last_successful_sweep_timestamp_seconds", ())] == 1000.0
    assert got[("selfheal_sweep_duration_seconds", ())] == 2.5
    assert got[("selfheal_incidents", (("state", "escalated"),))] == 2
    assert got[("selfheal_incidents", (("state", "awaiting_approval"),))] == 1
    assert got[("selfheal_incidents", (("state", "remediating"),))] == 0  # series always there
    assert got[("selfheal_remediation_runs_total", (("outcome", "succeeded"),))] == 5
    assert got[("selfheal_remediation_runs_total", (("outcome", "failed"),))] == 1
    assert got[("selfheal_remediation_runs_total", (("outcome", "unreachable"),))] == 0
    assert [p.name for p in tmp_path.iterdir()] == ["selfheal.prom"]  # no temp file left


def test_promtool_accepts_the_file(tmp_path: Path) -> None:
    path = tmp_path / "selfheal.prom"
    write_textfile(path, health(1000.0))
    done = subprocess.run([PROMTOOL, "check", "metrics"], input=path.read_text(), text=True,
                          capture_output=True, check=False, timeout=30)
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_sweep_whose_source_did_not_answer_keeps_the_last_success(tmp_path: Path) -> None:
    path = tmp_path / "selfheal.prom"
    write_textfile(path, health(1000.0))
    write_textfile(path, health(1060.0, answered=False))
    got = samples(path)
    assert got[("selfheal_last_sweep_timestamp_seconds", ())] == 1060.0
    assert got[("selfheal_last_successful_sweep_timestamp_seconds", ())] == 1000.0


def test_never_successful_leaves_the_last_success_out(tmp_path: Path) -> None:
    """Unknown is absent, not 1970: the example rules alert on absent() for this."""
    path = tmp_path / "selfheal.prom"
    write_textfile(path, health(1000.0, answered=False))
    assert "selfheal_last_successful_sweep_timestamp_seconds" not in path.read_text()


def test_unwritable_path_raises_oserror_for_the_caller_to_log(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        write_textfile(tmp_path / "missing-dir" / "selfheal.prom", health(1.0))


def test_path_must_end_in_prom() -> None:
    with pytest.raises(ValueError, match=r"only files ending in \.prom"):
        HealthSettings(textfile_path=Path("/var/lib/node_exporter/selfheal.txt"))


def test_record_sweep_logs_a_failure_and_returns(tmp_path: Path,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    from orchestrator.engine import SweepReport
    from orchestrator.health import record_sweep
    from orchestrator.store.db import Store

    store = Store(f"sqlite:///{tmp_path / 'state.db'}", b"k" * 32)
    report = SweepReport(started_at=1.0, finished_at=2.0, verdicts=(), actions=())
    with caplog.at_level(logging.WARNING):
        record_sweep(tmp_path / "no-such-dir" / "selfheal.prom", report, store)
    (record,) = [r for r in caplog.records if r.getMessage() == "health textfile not written"]
    assert "No such file or directory" in vars(record)["error"]


def test_a_dry_run_or_no_path_writes_nothing(tmp_path: Path) -> None:
    from orchestrator.engine import SweepReport
    from orchestrator.health import record_sweep
    from orchestrator.store.db import Store

    store = Store(f"sqlite:///{tmp_path / 'state.db'}", b"k" * 32)
    path = tmp_path / "selfheal.prom"
    record_sweep(path, SweepReport(1.0, 2.0, (), (), dry_run=True), store)
    record_sweep(None, SweepReport(1.0, 2.0, (), ()), store)
    assert not path.exists()
    record_sweep(path, SweepReport(1.0, 2.0, (), ()), store)
    assert "selfheal_last_successful_sweep_timestamp_seconds 2.0" in path.read_text()
