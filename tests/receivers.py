"""Real local receivers for notification tests: an HTTP webhook and an SMTP server on 127.0.0.1.

Each runs in a thread on a free loopback port and records what arrived; the HTTP one can answer
with any status and can be told to stall, to test timeouts.
"""

from __future__ import annotations

import json
import socketserver
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Webhook:
    """What the HTTP receiver got, and how it answers the next request."""

    port: int
    status: int = 200
    delay_s: float = 0.0
    received: list[dict[str, Any]] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)


@contextmanager
def webhook() -> Iterator[Webhook]:
    hook = Webhook(port=0)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            time.sleep(hook.delay_s)
            hook.paths.append(self.path)
            hook.received.append(json.loads(body))
            self.send_response(hook.status)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    hook.port = int(server.server_address[1])
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield hook
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class Mailbox:
    port: int
    mails: list[dict[str, Any]] = field(default_factory=list)


@contextmanager
def smtp_server() -> Iterator[Mailbox]:
    """Just enough SMTP (RFC 5321 without extensions) for a client that sends one mail."""
    box = Mailbox(port=0)

    class Handler(socketserver.StreamRequestHandler):
        def say(self, line: str) -> None:
            self.wfile.write(line.encode() + b"\r\n")

        def handle(self) -> None:
            self.say("220 localhost ESMTP test receiver")
            mail: dict[str, Any] = {"rcpt": []}
            data: list[str] | None = None
            for raw in self.rfile:
                line = raw.decode().rstrip("\r\n")
                if data is not None:
                    if line == ".":
                        box.mails.append({**mail, "data": "\n".join(data)})
                        mail, data = {"rcpt": []}, None
                        self.say("250 OK queued")
                    else:
                        data.append(line[1:] if line.startswith("..") else line)
                    continue
                verb = line[:4].upper()
                if verb in ("EHLO", "HELO"):
                    self.say("250 localhost")
                elif verb == "MAIL":
                    mail["from"] = line.split(":", 1)[1].strip()
                    self.say("250 OK")
                elif verb == "RCPT":
                    mail["rcpt"].append(line.split(":", 1)[1].strip())
                    self.say("250 OK")
                elif verb == "DATA":
                    data = []
                    self.say("354 end with <CRLF>.<CRLF>")
                elif verb == "QUIT":
                    self.say("221 bye")
                    return
                else:
                    self.say("250 OK")

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    box.port = int(server.server_address[1])
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    try:
        yield box
    finally:
        server.shutdown()
        server.server_close()
