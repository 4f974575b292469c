"""End to end from the installed wheel: what an ops team gets from `pip install` heals the lab.

The wheel is built and installed into a clean venv outside the checkout (tests/installed.py);
``selfheal init`` writes the settings and a copy of the shipped rules; ``selfheal serve`` from
that venv, with the roles and playbooks shipped inside the package, heals a crashed service on a
lab host. Nothing of the checkout is on its path: the runs' playbook is the installed one.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from orchestrator import lab
from orchestrator.config import PROJECT_ROOT, load_settings
from orchestrator.drill import await_drill
from orchestrator.store.audit import read_key
from orchestrator.store.db import Store
from tests.installed import clean_env, ok, sh

pytestmark = pytest.mark.e2e
HOST = "vps3"  # an app host: runs the demo service, no web or db role


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_healthy(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"serve exited: {log.read_text()[-3000:]}"
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                if json.load(answer)["status"] == "ok":
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"{url} never answered ok; see {log}")


def test_the_installed_wheel_inits_and_heals_a_crash(lab_fleet: None, installed_selfheal: Path,
                                                     tmp_path: Path) -> None:
    work, venv = tmp_path, installed_selfheal
    lab_settings = load_settings(lab.lab_paths().settings_file)
    inventory = lab_settings.inventory.path
    assert inventory is not None, "the lab's settings name its inventory"
    etc, state = work / "etc", work / "state"
    ok(sh(venv / "bin" / "selfheal", "init", etc,
          "--prometheus-url", lab_settings.prometheus.url,
          "--inventory", inventory, "--state-dir", state, cwd=work))
    settings = yaml.safe_load((etc / "selfheal.yml").read_text())
    port = free_port()
    settings["serve"].update(listen=f"127.0.0.1:{port}", sweep_every_s=1)
    (etc / "selfheal.yml").write_text(yaml.safe_dump(settings))
    (etc / "serve-token").write_text("installed-heal-token\n")
    os.chmod(etc / "serve-token", 0o600)
    log = work / "serve.log"
    with log.open("wb") as out:
        serve = subprocess.Popen([str(venv / "bin" / "selfheal"), "--config",
                                  str(etc / "selfheal.yml"), "serve"], cwd=work,
                                 env=clean_env(), stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_healthy(f"http://127.0.0.1:{port}/healthz", serve, log)
        key = read_key(state / "audit.key")
        assert key is not None, "serve made no audit key in its state dir"
        store = Store(f"sqlite:///{state / 'selfheal.db'}", key)
        result = await_drill(store, "service_crash", HOST,
                             lambda f, h: lab.inject(f, h).injected_at, timeout_s=180)
        assert result.healed, (result, log.read_text()[-3000:])
        assert result.remediation == "service_restart"
        assert lab.ssh_run(HOST, ["systemctl", "is-active", "selfheal-demo"]).returncode == 0
        # the play that healed it came from the installed package, not from the checkout
        commands = [json.loads(p.read_text())["command"]
                    for p in (state / "runs").rglob("command")]
        playbooks = {arg for command in commands for arg in command
                     if arg.endswith("/playbooks/remediate.yml")}
        assert playbooks, commands
        for playbook in playbooks:
            assert venv in Path(playbook).parents and PROJECT_ROOT not in Path(
                playbook).parents, playbook
    finally:
        serve.send_signal(signal.SIGTERM)
        try:
            assert serve.wait(timeout=120) == 0, log.read_text()[-3000:]
        finally:
            if serve.poll() is None:
                serve.kill()
            lab.clear("service_crash", HOST)
