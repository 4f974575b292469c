"""Boot the lab once per test session (and take it down again if this session booted it); the
image it boots from was built in the background while the other tests ran (tests/background.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from orchestrator import lab
from tests import background


@pytest.fixture(scope="session")
def lab_fleet() -> Iterator[None]:
    was_up = lab.lab_is_up()
    if not was_up:
        code, output = background.lab_image_ready()  # built while the other tests ran
        if code != 0:
            pytest.fail(f"building the lab image failed (exit {code}):\n{output[-3000:]}")
        lab.up(hosts=4)
    yield
    if not was_up:
        lab.down()
