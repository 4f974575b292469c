#!/usr/bin/python3
"""The lab's demo app: the service selfheal watches and heals on every lab host.

Deployed as releases, as deploy tools do: /opt/selfheal-demo/releases/<release>/ holds this file
and ``release.conf``; selfheal-demo.service runs /opt/selfheal-demo/current/selfheal_demo.py,
``current`` being a symlink to the live release (``selfheal-demo-deploy`` switches it).
Serves ``GET /healthz`` (200 "ok") and ``GET /metrics`` (the prometheus_client default registry,
with process_resident_memory_bytes and process_cpu_seconds_total, plus
``selfheal_demo_build_info{release="..."} 1``) on the address in ``$LISTEN`` (host:port, from
/etc/default/selfheal-demo, one per host).

Faults the lab injects through it:
- ``release.conf`` with ``leak_mb_per_s`` > 0 (release v2): a cache that never evicts grows the
  resident memory by that many MB a second, up to ``leak_cap_mb``.
- SIGUSR1 starts a thread that burns a core in this process (a unit's own process running away);
  SIGUSR2 stops it.
"""

import os
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Gauge, generate_latest

CHUNK_MB = 1


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


def read_release(folder: Path) -> dict[str, str]:
    """``release.conf`` beside this file: KEY=VALUE lines (release, leak_mb_per_s, ...)."""
    conf: dict[str, str] = {"release": "unknown"}
    path = folder / "release.conf"
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            key, sep, value = line.partition("=")
            if sep and not key.startswith("#"):
                conf[key.strip()] = value.strip()
    return conf


def leak(mb_per_s: float, cap_mb: int) -> None:
    """Keep filled chunks for ever (they are written, so they are resident), up to the cap."""
    kept: list[bytes] = []
    while len(kept) * CHUNK_MB < cap_mb:
        kept.append(bytes([len(kept) % 251 + 1]) * (CHUNK_MB << 20))
        time.sleep(CHUNK_MB / mb_per_s)
    while True:
        time.sleep(3600)


class Burner:
    """A busy thread started and stopped by signals."""

    def __init__(self) -> None:
        self.running = threading.Event()

    def start(self, *_: object) -> None:
        if not self.running.is_set():
            self.running.set()
            threading.Thread(target=self._burn, daemon=True, name="burn").start()

    def stop(self, *_: object) -> None:
        self.running.clear()

    def _burn(self) -> None:
        n = 0
        while self.running.is_set():
            n = (n * 31 + 7) % 1_000_003


def main() -> int:
    conf = read_release(Path(__file__).resolve().parent)
    Gauge("selfheal_demo_build_info", "The release this process runs.", ["release"]).labels(
        release=conf["release"]
    ).set(1)
    mb_per_s = float(conf.get("leak_mb_per_s", "0"))
    if mb_per_s > 0:
        cap = int(conf.get("leak_cap_mb", "256"))
        threading.Thread(target=leak, args=(mb_per_s, cap), daemon=True, name="leak").start()
    burner = Burner()
    signal.signal(signal.SIGUSR1, burner.start)
    signal.signal(signal.SIGUSR2, burner.stop)
    host, _, port = os.environ.get("LISTEN", "127.0.0.1:8080").rpartition(":")
    server = ThreadingHTTPServer((host, int(port)), Handler)
    print(f"selfheal-demo {conf['release']} listening on {host}:{port}", flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
