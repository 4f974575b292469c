"""Log records go to the stderr of the moment, as one JSON object per line."""

from __future__ import annotations

import io
import json
import logging
import sys

import pytest

from orchestrator import logs


def test_a_record_after_stderr_was_swapped_and_closed_goes_to_the_new_stderr(
        monkeypatch: pytest.MonkeyPatch) -> None:
    first, second = io.StringIO(), io.StringIO()
    monkeypatch.setattr(sys, "stderr", first)
    logs.setup("INFO", "json")
    log = logging.getLogger("selfheal.test")
    log.info("ansible run", extra={"phase": "remediate"})
    first.close()  # what a CLI runner does with its captured stream
    monkeypatch.setattr(sys, "stderr", second)
    log.info("ansible run", extra={"phase": "verify"})
    (line,) = second.getvalue().splitlines()
    record = json.loads(line)
    assert (record["msg"], record["phase"]) == ("ansible run", "verify")
    assert "Logging error" not in second.getvalue()
