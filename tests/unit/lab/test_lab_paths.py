"""A lab that is up is found from any shell: without ``$SELFHEAL_LAB_CACHE`` the lab's paths
take the image its hosts booted from (state.json), so `lab status` never says "down" and
`lab down` never leaves hosts running because the shell lacks the variable `lab up` had."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrator.lab.paths import REPO_ROOT, lab_paths


def test_an_up_lab_keeps_the_image_it_booted_from(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    lab = tmp_path / "lab"
    lab.mkdir()
    booted = tmp_path / "other-cache"
    (lab / "state.json").write_text(json.dumps({"image": str(booted / "rootfs"), "hosts": []}))
    monkeypatch.setenv("SELFHEAL_LAB_DIR", str(lab))
    monkeypatch.delenv("SELFHEAL_LAB_CACHE", raising=False)
    assert lab_paths().image_dir == booted / "rootfs"
    monkeypatch.setenv("SELFHEAL_LAB_CACHE", str(tmp_path / "asked"))  # asked for: it wins
    assert lab_paths().cache_dir == tmp_path / "asked"


def test_without_a_lab_or_with_an_unreadable_state_the_default_cache_is_used(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SELFHEAL_LAB_DIR", str(tmp_path))
    monkeypatch.delenv("SELFHEAL_LAB_CACHE", raising=False)
    default = REPO_ROOT / ".cache" / "lab-image"
    assert lab_paths().cache_dir == default.resolve()
    (tmp_path / "state.json").write_text("{not json")
    assert lab_paths().cache_dir == default.resolve()
