"""``selfheal notify test``: a real message to a real local receiver; exit 0 delivered, 2 not."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from typer.testing import CliRunner

from orchestrator.cli.app import app
from tests.receivers import webhook

TOKEN = "t0ken-that-must-not-print"


@pytest.fixture(autouse=True)
def no_config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SELFHEAL_CONFIG", raising=False)


def run(monkeypatch: pytest.MonkeyPatch, *urls: str) -> tuple[int, str]:
    monkeypatch.setenv("SELFHEAL_NOTIFY__URLS", json.dumps(list(urls)))
    result = CliRunner().invoke(app, ["notify", "test", "--json"])
    return result.exit_code, result.stdout


def test_delivered_exits_0_and_the_message_arrives(monkeypatch: pytest.MonkeyPatch) -> None:
    with webhook() as hook:
        code, out = run(monkeypatch, f"json://127.0.0.1:{hook.port}/{TOKEN}")
        assert hook.received[0]["title"] == "selfheal: test notification"
    assert code == 0, out
    assert json.loads(out) == {"delivered": True, "problems": [], "targets": [
        {"target": "notify.urls[0] (json)", "sent": True, "reason": ""}]}


def test_not_delivered_exits_2_and_names_the_target_not_the_url(
        monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code, out = run(monkeypatch, f"json://127.0.0.1:{port}/{TOKEN}", "not-a-url")
    assert code == 2
    report = json.loads(out)
    assert report["delivered"] is False
    assert report["targets"][0]["target"] == "notify.urls[0] (json)"
    assert report["targets"][0]["sent"] is False
    assert report["problems"] == ["notify.urls[1] is not an apprise URL (expected "
                                  "scheme://...; e.g. jsons://host/path, slack://..., "
                                  "mailtos://...)"]
    assert TOKEN not in out


def test_nothing_configured_exits_2_saying_how_to_configure(
        monkeypatch: pytest.MonkeyPatch) -> None:
    code, out = run(monkeypatch)
    assert code == 2
    assert json.loads(out) == {"error": "ConfigError", "message": (
        "no notify targets configured: set notify.urls in selfheal.yml, notify.urls_file, "
        "or SELFHEAL_NOTIFY__URLS='[\"jsons://...\"]'")}


def test_plain_output_says_what_arrived(monkeypatch: pytest.MonkeyPatch) -> None:
    with webhook() as hook:
        monkeypatch.setenv("SELFHEAL_NOTIFY__URLS", json.dumps(
            [f"json://127.0.0.1:{hook.port}/{TOKEN}"]))
        result = CliRunner().invoke(app, ["notify", "test"])
    assert result.exit_code == 0
    assert result.stdout.strip() == "notify.urls[0] (json): delivered"
