"""``selfheal audit`` and the key handling of ``store_for``: a fresh install needs no manual step;
a lost key is an error with a hint, never replaced silently; ``init-key`` starts a new chain only
for a database with no records."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from orchestrator.cli import audit
from orchestrator.cli.common import State
from orchestrator.config import Settings, StateSettings
from orchestrator.errors import AuditChainError
from orchestrator.store.audit import chain_marker
from orchestrator.wiring import store_for

runner = CliRunner()


def settings_in(tmp_path: Path) -> Settings:
    return Settings(state=StateSettings(dir=tmp_path / "state"))  # type: ignore[call-arg]


def cli(settings: Settings, *args: str) -> tuple[int, dict[str, object]]:
    State.config, State._settings = None, settings
    app = typer.Typer()
    app.add_typer(audit.app, name="audit")
    done = runner.invoke(app, ["audit", *args, "--json"])
    return done.exit_code, json.loads(done.stdout)


def test_a_fresh_install_creates_its_key_and_verifies(tmp_path: Path) -> None:
    settings = settings_in(tmp_path)
    store = store_for(settings)
    assert settings.state.audit_key_path.exists()
    store.audit("test", "s1")
    assert chain_marker(settings.state.audit_key_path).exists()
    assert cli(settings, "verify") == (0, {"ok": True, "records": 1})


def test_a_missing_key_is_an_error_not_a_new_key(tmp_path: Path) -> None:
    settings = settings_in(tmp_path)
    store_for(settings).audit("test", "s1")
    key = settings.state.audit_key_path
    key.unlink()
    with pytest.raises(AuditChainError, match=r"audit key .* is missing but the database holds "
                                              r"1 rows in audit.*restore the key"):
        store_for(settings)
    assert not key.exists()
    code, body = cli(settings, "verify")
    assert code == 2 and "restore the key" in str(body["message"])
    assert not key.exists()


def test_a_missing_key_of_an_emptied_log_is_an_error_too(tmp_path: Path) -> None:
    settings = settings_in(tmp_path)
    store_for(settings).audit("test", "s1")
    with sqlite3.connect(settings.state.dir / "selfheal.db") as conn:
        conn.executescript("DELETE FROM audit; DELETE FROM audit_head")
    settings.state.audit_key_path.unlink()
    with pytest.raises(AuditChainError, match=r"says this log has had records.*init-key"):
        store_for(settings)


def test_an_emptied_log_fails_verify(tmp_path: Path) -> None:
    settings = settings_in(tmp_path)
    store_for(settings).audit("test", "s1")
    with sqlite3.connect(settings.state.dir / "selfheal.db") as conn:
        conn.executescript("DELETE FROM audit; DELETE FROM audit_head")
    code, body = cli(settings, "verify")
    assert code == 1 and "emptied" in str(body["error"])


def test_init_key_refuses_while_records_exist(tmp_path: Path) -> None:
    settings = settings_in(tmp_path)
    store_for(settings).audit("test", "s1")
    key = settings.state.audit_key_path
    before = key.read_bytes()
    code, body = cli(settings, "init-key")
    assert code == 2 and "a new key cannot verify them" in str(body["message"])
    assert key.read_bytes() == before


def test_init_key_starts_a_new_chain_on_a_new_database(tmp_path: Path) -> None:
    settings = settings_in(tmp_path)
    store_for(settings).audit("test", "s1")
    key = settings.state.audit_key_path
    old = key.read_bytes()
    (settings.state.dir / "selfheal.db").rename(tmp_path / "evidence.db")  # moved aside on purpose
    assert cli(settings, "verify")[0] == 1  # the marker still says records existed
    code, body = cli(settings, "init-key")
    assert code == 0 and len(body["moved_aside"]) == 2  # type: ignore[arg-type]
    assert key.read_bytes() != old
    assert any(Path(p).read_bytes() == old for p in body["moved_aside"])  # type: ignore[union-attr]
    store_for(settings).audit("test", "s1")
    assert cli(settings, "verify") == (0, {"ok": True, "records": 1})
