"""Prometheus credentials in the URL never show (``sources.client``; found by a hostile review)."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.config import load_settings
from orchestrator.errors import ConfigError
from orchestrator.sources.client import access


@pytest.mark.parametrize("password", ["s3cr/et", "s3cr#et", "s3cr?et"])
def test_a_url_password_with_a_delimiter_never_shows(password: str, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A generated password often holds '/', and people paste it into the URL unencoded:
    urlsplit then ends the host part before the '@' and finds no password to redact. Such a URL
    is refused at load time without being echoed."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SELFHEAL_CONFIG", raising=False)
    monkeypatch.setenv("SELFHEAL_PROMETHEUS__URL", f"http://admin:{password}@127.0.0.1:9090/")
    try:
        settings = load_settings()
    except ConfigError as exc:
        assert "s3cr" not in str(exc)
        return
    shown = [repr(settings), repr(settings.prometheus), settings.prometheus.redacted_url]
    try:
        how = access(settings.prometheus)
    except ConfigError as exc:
        shown.append(str(exc))
    else:
        shown.append(how.explain(RuntimeError("connection refused"), "'up'"))
    assert not [s for s in shown if "s3cr" in s], shown
