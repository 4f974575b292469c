"""Boot the lab once per test session (and take it down again if this session booted it)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from orchestrator import lab


@pytest.fixture(scope="session")
def lab_fleet() -> Iterator[None]:
    was_up = lab.lab_is_up()
    if not was_up:
        lab.up(hosts=4)
    yield
    if not was_up:
        lab.down()
