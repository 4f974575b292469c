"""`selfheal sweep --every` as a service: stops cleanly on SIGTERM after the sweep in hand, and
keeps one root-cause explainer across its controller rebuilds."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from orchestrator import service
from orchestrator.config import Settings
from orchestrator.engine import Controller, SweepReport
from orchestrator.explainer import Explainer
from orchestrator.wiring import controller_for
from tests.integration.conftest import free_port

pytestmark = pytest.mark.integration


def test_every_loop_stops_on_sigterm(tmp_path: Path) -> None:
    (tmp_path / "hosts.ini").write_text("web1\n")
    config = tmp_path / "selfheal.yml"
    config.write_text(f"prometheus: {{url: 'http://127.0.0.1:{free_port()}', timeout_s: 1}}\n"
                      "inventory: {path: hosts.ini}\nstate: {dir: state}\n")
    proc = subprocess.Popen([sys.executable, "-m", "orchestrator", "--config", str(config),
                             "sweep", "--every", "0.2", "--json"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    two_reports = threading.Event()

    def read() -> None:  # SIGTERM only once the loop runs: start-up is slow on a busy machine
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if lines.count("}\n") >= 2:
                two_reports.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    assert two_reports.wait(timeout=60), "no two sweeps within 60 s"
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)
    reader.join(timeout=10)
    out = "".join(lines)
    err = proc.stderr.read() if proc.stderr else ""
    assert proc.returncode == 1, err  # Prometheus is down: every sweep said "unknown"
    reports = [json.loads(chunk) for chunk in out.replace("}\n{", "}\n\x00{").split("\x00")]
    assert len(reports) >= 2
    assert all(r["hosts"][0]["health"] == "unknown" for r in reports)
    assert "Traceback" not in err


def test_the_loop_keeps_one_explainer_across_controller_rebuilds(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """New incidents' analyses queued by one controller are still run and recorded after the
    loop rebuilt it: every controller the loop sweeps with shares the loop's explainer."""
    (tmp_path / "hosts.ini").write_text("web1\n")
    monkeypatch.chdir(tmp_path)
    settings = Settings(prometheus={"url": f"http://127.0.0.1:{free_port()}", "timeout_s": 1},
                        inventory={"path": tmp_path / "hosts.ini"},
                        state={"dir": tmp_path / "state"})  # type: ignore[arg-type]
    monkeypatch.setattr(service, "INVENTORY_REFRESH_S", 0.0)  # rebuild before every sweep
    seen: list[tuple[Controller, Explainer | None]] = []

    def swept(_: SweepReport) -> None:
        seen.append((loop.controller, loop.controller.explainer))
        if len(seen) >= 3:
            loop.stop()

    loop = service.SweepLoop(settings, lambda: controller_for(settings), 0.05, on_report=swept)
    runner = threading.Thread(target=loop.run)
    runner.start()
    runner.join(timeout=120)
    assert not runner.is_alive(), "the loop did not stop"
    controllers = {id(c) for c, _ in seen}
    explainers = {id(e) for _, e in seen}
    assert len(controllers) == len(seen) >= 3  # a new controller for every sweep
    assert len(explainers) == 1 and seen[0][1] is not None
    assert loop.explainer is None  # closed when the loop ended
