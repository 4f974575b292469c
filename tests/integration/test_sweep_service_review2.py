"""Second hostile review: `selfheal sweep --every` against the controller lock (real flock)."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from orchestrator.store.lock import controller_lock
from tests.integration.conftest import free_port

pytestmark = pytest.mark.integration

# the service as `selfheal sweep --every`, with the lock wait cut from 300 s to 1 s
SERVICE = ("import sys, orchestrator.wiring as w; w.ACT_WAIT_S = 1.0; "
           "from orchestrator.cli.app import main; sys.argv[0] = 'selfheal'; main()")


def test_the_service_outlives_a_long_run_by_hand(tmp_path: Path) -> None:
    """A run by hand or a retry may hold the controller lock longer than a sweep waits for it
    (a play may take ansible.timeout_s = 300 s, plus check mode, verify and rollback). The
    service must skip that sweep and go on, not exit with ControllerBusy and stop healing."""
    (tmp_path / "hosts.ini").write_text("web1\n")
    config = tmp_path / "selfheal.yml"
    config.write_text(f"prometheus: {{url: 'http://127.0.0.1:{free_port()}', timeout_s: 1}}\n"
                      "inventory: {path: hosts.ini}\nstate: {dir: state}\n")
    state = tmp_path / "state"
    with controller_lock(state):  # a human's long run holds the lock
        proc = subprocess.Popen([sys.executable, "-c", SERVICE, "--config", str(config),
                                 "sweep", "--every", "0.2", "--json"], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        lines: list[str] = []
        report = threading.Event()

        def read() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                lines.append(line)
                if line == "}\n":
                    report.set()

        threading.Thread(target=read, daemon=True).start()
        deadline = time.monotonic() + 60
        while not (state / "service.lock").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert (state / "service.lock").exists(), "the service did not start within 60 s"
        time.sleep(4.0)  # well past the service's 1 s wait for the lock
    try:
        assert report.wait(timeout=60) or proc.poll() is not None
        assert proc.poll() is None, (proc.returncode, "".join(lines))  # still sweeping
    finally:
        proc.terminate()
        proc.wait(timeout=30)
