"""A local OpenAI-compatible model server replaying recorded answers, and the RCA case folders.

Used by the root-cause analysis tests and ``benchmarks/rca.py``. The server is a real HTTP server
on 127.0.0.1 speaking the ``/v1/chat/completions`` protocol, so the real litellm client (and the
openai SDK under it) is exercised end to end; each request takes the next ``Reply`` (a recorded
answer, an HTTP error, a stall) and is recorded, so a test can read the prompt that was sent.

A case folder (``tests/fixtures/rca/<case>/``) holds ``case.json`` (the host's verdict and the raw
outputs of the ``diagnose`` role's tasks: the context in), ``answer.txt`` (the model's recorded
answer) and ``expected.json`` (the diagnosis expected out, scored on its structured fields).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from orchestrator.config import PROJECT_ROOT, LlmSettings, RcaSettings
from orchestrator.core.diagnose import HostVerdict
from orchestrator.models import Diagnosis, Health
from orchestrator.rca.context import Context, Series
from orchestrator.rca.facts import parse_facts
from orchestrator.rca.stage import RcaStage, _masked
from orchestrator.rules import Rules, load_rules

CASES = Path(__file__).resolve().parent / "fixtures" / "rca"
KEY_ENV = "SELFHEAL_TEST_LLM_KEY"
KEY = "sk-test-0123456789abcdefghij"


@dataclass
class Reply:
    """How the server answers one request: a recorded content, an HTTP status, a stall."""

    content: str = ""
    status: int = 200
    delay_s: float = 0.0


@dataclass
class ReplayServer:
    port: int
    replies: list[Reply] = field(default_factory=list)
    received: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)

    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def settings(self, timeout_s: float = 10.0) -> LlmSettings:
        return LlmSettings(model="openai/replay", api_base=self.api_base, api_key_env=KEY_ENV,
                           timeout_s=timeout_s)


@contextmanager
def replay_server() -> Iterator[ReplayServer]:
    state = ReplayServer(0)

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
            state.received.append(body)
            state.headers.append({k.lower(): v for k, v in self.headers.items()})
            reply = state.replies.pop(0) if state.replies else Reply("{}")
            time.sleep(reply.delay_s)
            if reply.status != 200:
                payload = {"error": {"message": f"replayed HTTP {reply.status}",
                                     "type": "replay", "code": reply.status}}
            else:
                payload = {"id": "chatcmpl-replay", "object": "chat.completion",
                           "created": int(time.time()), "model": "replay",
                           "choices": [{"index": 0, "finish_reason": "stop",
                                        "message": {"role": "assistant",
                                                    "content": reply.content}}],
                           "usage": {"prompt_tokens": 100, "completion_tokens": 50,
                                     "total_tokens": 150}}
            data = json.dumps(payload).encode()
            try:
                self.send_response(reply.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except OSError:  # the client gave up (a timeout test)
                pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def project_rules() -> Rules:
    return load_rules(PROJECT_ROOT / "rules", PROJECT_ROOT / "ansible" / "roles")


@dataclass(frozen=True)
class Case:
    name: str
    verdict: HostVerdict
    diagnosis: Diagnosis | None
    context: Context
    answer: str
    expected: dict[str, Any]


def load_case(folder: Path, now: float | None = None) -> Case:
    """A case folder as the verdict, the context the stage would gather, the recorded answer."""
    case = json.loads((folder / "case.json").read_text())
    now = now or float(case.get("now") or time.time())
    diagnoses = tuple(Diagnosis(host=case["host"], fault=d["fault"],
                                confidence=d.get("confidence", 1.0),
                                evidence=tuple(d.get("evidence", ())),
                                remediations=tuple(d["remediations"]),
                                labels=d.get("labels", {}), subject=d.get("subject", ""))
                      for d in case.get("diagnoses", ()))
    verdict = HostVerdict(case["host"], Health(case["health"]), diagnoses,
                          tuple(case.get("notes", ())),
                          {s: Health(h) for s, h in case.get("signals", {}).items()})
    # "facts" holds each diagnose task's stdout; the package log's dates are relative hours
    results: dict[str, Any] = {task: {"stdout": out} for task, out in case["facts"].items()}
    results["release links"] = {"results": [
        {"item": r["link"], "stat": {"exists": True, "lnk_target": r["target"],
                                     "mtime": now - 3600 * r["hours_ago"]}}
        for r in case.get("releases", ())]}
    facts = parse_facts(results, "", now, ())
    timeline = tuple(Series(s["signal"], s.get("firing_when"), 300.0,
                            tuple(s["values"]), s.get("subject", ""))
                     for s in case.get("timeline", ()))
    context = Context(host=case["host"], groups=tuple(case.get("groups", ())), at=now,
                      health=case["health"], diagnoses=tuple(_masked(d) for d in diagnoses),
                      notes=verdict.notes, signals={s: h.value for s, h in verdict.signals.items()},
                      timeline=timeline, facts=facts)
    return Case(folder.name, verdict, diagnoses[0] if diagnoses else None, context,
                (folder / "answer.txt").read_text(), json.loads((folder / "expected.json")
                                                              .read_text()))


def cases() -> list[Path]:
    return sorted(p for p in CASES.iterdir() if (p / "case.json").is_file())


def stage(rules: Rules, llm: LlmSettings | None = None) -> RcaStage:
    """A stage for given contexts (no Prometheus, Ansible or store: the case brings them)."""
    return RcaStage(rules=rules, inventory=None,  # type: ignore[arg-type]
                    settings=RcaSettings(), llm=llm or LlmSettings(), secrets=(KEY,))
