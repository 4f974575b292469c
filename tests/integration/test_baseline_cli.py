"""``selfheal baseline train|status`` against a real Prometheus (a short window at 1 s steps)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from orchestrator.cli import baseline
from orchestrator.cli.common import State
from orchestrator.config import PrometheusSettings, Settings
from orchestrator.detection import AnomalyWatch
from orchestrator.sources.prometheus import connect
from tests.integration.conftest import Exporter, RealPrometheus, free_port
from tests.integration.test_detection_stage import HOSTS, settings_for

pytestmark = pytest.mark.integration
runner = CliRunner()


def _app(settings: Settings) -> typer.Typer:
    State.config, State._settings = None, settings
    app = typer.Typer()
    app.add_typer(baseline.app, name="baseline")
    return app


def test_train_then_status_then_the_sweep_loads_it(prometheus: RealPrometheus,
                                                   exporter: Exporter, tmp_path: Path) -> None:
    exporter.gauge.labels("127.0.2.1:9100", "det-cpu").set(0.3)
    exporter.gauge.labels("127.0.2.2:9100", "det-cpu").set(0.2)
    exporter.gauge.labels("127.0.2.1:9100", "det-mem").set(0.5)
    exporter.gauge.labels("127.0.2.2:9100", "det-mem").set(0.6)
    prometheus.wait_for('selfheal_test_service_up{unit="det-mem",instance="127.0.2.2:9100"}')
    time.sleep(3)  # a few points of history
    settings = settings_for(prometheus, tmp_path)
    app = _app(settings)
    done = runner.invoke(app, ["baseline", "train", "--days", "0.01", "--step", "1", "--json"])
    assert done.exit_code == 0, done.output
    trained = json.loads(done.stdout)
    assert trained["hosts"] >= 2 and trained["rows"] >= 860
    assert Path(trained["saved"]).is_file()
    shown = runner.invoke(app, ["baseline", "status", "--json"])
    assert shown.exit_code == 0, shown.output
    status = json.loads(shown.stdout)
    assert status["health"] == "ok" and not status["stale"]
    assert status["window"]["days"] == pytest.approx(0.01)
    assert {"python", "numpy", "pandas"} <= set(status["versions"])
    watch = AnomalyWatch(settings, connect(settings.prometheus), HOSTS)
    report = watch.observe(time.time())
    assert not report.fallback and "baselines trained" in report.model_status
    assert "fresh" in report.model_status


def test_status_without_a_model_needs_a_human(prometheus: RealPrometheus,
                                              tmp_path: Path) -> None:
    app = _app(settings_for(prometheus, tmp_path))
    shown = runner.invoke(app, ["baseline", "status", "--json"])
    assert shown.exit_code == 1
    assert "selfheal baseline train" in json.loads(shown.stdout)["status"]


def test_train_with_prometheus_down_exits_2_and_names_the_fix(prometheus: RealPrometheus,
                                                              tmp_path: Path) -> None:
    settings = settings_for(prometheus, tmp_path).model_copy(update={
        "prometheus": PrometheusSettings(url=f"http://127.0.0.1:{free_port()}", timeout_s=1)})
    done = runner.invoke(_app(settings), ["baseline", "train", "--days", "0.01", "--step", "1"])
    assert done.exit_code == 2
    assert "did not answer" in done.output and "prometheus.url" in done.output
