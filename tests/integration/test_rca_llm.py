"""The model step through the real litellm client against a local OpenAI-compatible server.

The server (tests/rca_replay.py) replays recorded answers; each case folder under
tests/fixtures/rca is scored on its structured fields. Timeouts, HTTP errors, quota and garbage
answers must leave the rules' report intact, with the reason said.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.rca_replay import (
    KEY,
    KEY_ENV,
    ReplayServer,
    Reply,
    cases,
    load_case,
    project_rules,
    replay_server,
    stage,
)

RULES = project_rules()


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[ReplayServer]:
    monkeypatch.setenv(KEY_ENV, KEY)
    with replay_server() as running:
        yield running


@pytest.mark.parametrize("folder", cases(), ids=lambda p: p.name)
def test_recorded_case_scores_on_its_structured_fields(folder: Path,
                                                       server: ReplayServer) -> None:
    case = load_case(folder)
    server.replies.append(Reply(case.answer))
    report = stage(RULES, server.settings()).explain(case.verdict, case.diagnosis,
                                                     case.context).report
    got = {"fault": report.fault, "remediation": report.remediation,
           "llm_status": report.llm_status.value, "needs_approval": report.needs_approval,
           "risk_tier": report.risk_tier,
           "model_fault": (report.model or {}).get("fault"),
           "model_remediation": (report.model or {}).get("remediation")}
    assert got == case.expected
    rules_alone = stage(RULES).explain(case.verdict, case.diagnosis, case.context).report
    assert (report.fault, report.remediation, dict(report.params)) == (
        rules_alone.fault, rules_alone.remediation, dict(rules_alone.params))
    sent = server.received[0]
    assert sent["model"] == "replay" and sent["temperature"] == 0
    assert sent["response_format"]["type"] == "json_schema"
    assert server.headers[0]["authorization"] == f"Bearer {KEY}"
    assert KEY not in str(sent["messages"])


def _crash() -> tuple[object, ...]:
    case = load_case(next(p for p in cases() if p.name == "service_crash_agree"))
    return case.verdict, case.diagnosis, case.context


@pytest.mark.parametrize(("reply", "why"), [
    (Reply("The service crashed; restart it."), "not JSON"),
    (Reply('{"summary": 1}'), "schema errors"),
    (Reply('["service_restart"]'), "not an object"),
    (Reply("", status=500), "HTTP 500"),
    (Reply("", status=429), "quota or rate limit"),
    (Reply("", status=401), "credentials"),
])
def test_garbage_and_http_errors_leave_the_rules_alone_and_say_why(
        reply: Reply, why: str, server: ReplayServer) -> None:
    server.replies.append(reply)
    verdict, diagnosis, context = _crash()
    report = stage(RULES, server.settings()).explain(verdict, diagnosis, context).report
    assert report.llm_status.value == "error"
    assert why in report.llm_reason and report.llm_reason.endswith("rules alone")
    assert (report.fault, report.remediation, report.risk_tier, report.needs_approval) == (
        "service_crash", "service_restart", 1, False)
    assert report.model is None and KEY not in report.llm_reason


def test_a_slow_model_times_out_and_the_rules_answer(server: ReplayServer) -> None:
    case = load_case(next(p for p in cases() if p.name == "service_crash_agree"))
    server.replies.append(Reply(case.answer, delay_s=4))
    explained = stage(RULES, server.settings(timeout_s=1)).explain(
        case.verdict, case.diagnosis, case.context)
    assert explained.report.llm_status.value == "error"
    assert "did not answer within llm.timeout_s=1 s" in explained.report.llm_reason
    assert explained.llm_s < 3.5
    assert explained.report.remediation == "service_restart"


def test_a_missing_key_is_an_error_naming_the_variable(server: ReplayServer,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_ENV)
    verdict, diagnosis, context = _crash()
    report = stage(RULES, server.settings()).explain(verdict, diagnosis, context).report
    assert report.llm_status.value == "error" and KEY_ENV in report.llm_reason
    assert server.received == []


def test_no_model_or_no_llm_is_rules_alone_and_never_imports_litellm() -> None:
    import subprocess
    import sys

    code = ("import sys; from tests.rca_replay import *; c = load_case(cases()[0]); "
            "r = stage(project_rules()).explain(c.verdict, c.diagnosis, c.context).report; "
            "print(r.llm_status.value, 'litellm' in sys.modules)")
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True,
                          text=True, check=True)
    assert done.stdout.split() == ["off", "False"]


def test_importing_litellm_and_calling_the_model_connects_only_to_api_base() -> None:
    """Every socket connect and name lookup of a fresh process (litellm's import included) is
    recorded by an audit hook: only the local model server is reached."""
    import subprocess
    import sys

    code = """
import json, os, sys
seen = []
sys.addaudithook(lambda e, a: seen.append(str(a[1] if e == "socket.connect" else a[0]))
                 if e in ("socket.connect", "socket.getaddrinfo") else None)
from tests.rca_replay import *
os.environ[KEY_ENV] = KEY
with replay_server() as server:
    c = load_case(cases()[0])
    server.replies.append(Reply(c.answer))
    r = stage(project_rules(), server.settings()).explain(c.verdict, c.diagnosis, c.context)
print(json.dumps([r.report.llm_status.value, sorted(set(seen))]))
"""
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-W", "ignore", "-c", code], cwd=root,
                          capture_output=True, text=True, check=True)
    status, seen = __import__("json").loads(done.stdout.strip().splitlines()[-1])
    assert status == "used"
    assert seen and all(s.startswith(("127.0.0.1", "('127.0.0.1'")) for s in seen), seen
