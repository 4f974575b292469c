"""Settings: file, then SELFHEAL_* over it; relative paths follow the file; errors name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.config import load_settings
from orchestrator.errors import ConfigError


def test_env_beats_file_and_paths_are_relative_to_the_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "selfheal.yml"
    config.write_text("prometheus: {url: 'http://file:9090', timeout_s: 3}\n"
                      "inventory: {path: inv/hosts.ini}\n")
    monkeypatch.setenv("SELFHEAL_PROMETHEUS__URL", "http://env:9090")
    settings = load_settings(config)
    assert settings.prometheus.url == "http://env:9090"
    assert settings.prometheus.timeout_s == 3
    assert settings.inventory.path == tmp_path / "inv" / "hosts.ini"


def test_unknown_key_is_named(tmp_path: Path) -> None:
    config = tmp_path / "selfheal.yml"
    config.write_text("prometheus: {ur: 'http://x'}\n")
    with pytest.raises(ConfigError, match=r"prometheus\.ur: Extra inputs"):
        load_settings(config)


def test_bad_value_and_missing_file(tmp_path: Path) -> None:
    config = tmp_path / "selfheal.yml"
    config.write_text("prometheus: {timeout_s: -1}\n")
    with pytest.raises(ConfigError, match=r"prometheus\.timeout_s"):
        load_settings(config)
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.yml")
