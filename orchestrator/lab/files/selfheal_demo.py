#!/usr/bin/python3
"""The lab's demo app: the service selfheal watches and heals on every lab host.

Installed into the lab image as /usr/local/bin/selfheal_demo.py and run by
selfheal-demo.service. Serves ``GET /healthz`` (200 "ok") and ``GET /metrics`` (the
prometheus_client default registry, with process_resident_memory_bytes and
process_cpu_seconds_total) on the address in ``$LISTEN`` (host:port, from
/etc/default/selfheal-demo, one per host).
"""

import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest


class Handler(BaseHTTPRequestHandler):
    """Answers /healthz and /metrics; anything else is 404."""

    def do_GET(self) -> None:
        if self.path == "/healthz":
            self._send(200, b"ok\n", "text/plain; charset=utf-8")
        elif self.path == "/metrics":
            self._send(200, generate_latest(REGISTRY), CONTENT_TYPE_LATEST)
        else:
            self._send(404, b"not found\n", "text/plain; charset=utf-8")

    def _send(self, code: int, body: bytes, content_type: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Keep the journal quiet: one scrape a second would flood it."""


def main() -> int:
    host, _, port = os.environ.get("LISTEN", "127.0.0.1:8080").rpartition(":")
    server = ThreadingHTTPServer((host, int(port)), Handler)
    print(f"selfheal-demo listening on {host}:{port}", flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
