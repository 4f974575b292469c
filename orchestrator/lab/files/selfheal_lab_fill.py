#!/usr/bin/python3
"""Lab faults that fill a resource the way real software does: a database pool, a data disk.

Installed into the lab image as /usr/local/bin/selfheal_lab_fill.py. ``selfheal lab inject``
runs it through ``systemd-run --property=Type=notify`` so it outlives the SSH session and the
injection returns only once the resource is full; ``selfheal lab clear`` stops the unit.

``db-pool DATABASE [--sessions N]`` (fault ``db_pool_exhausted``, run as the application's OS
user): open psql sessions, each ``BEGIN`` + ``SELECT txid_current()`` and then silent (``idle in
transaction``), until PostgreSQL refuses the next one (only the superuser slots are left) or N
are open; hold them.

``disk ROOT [--live]`` (faults ``disk_full`` and ``disk_full_live_log``, run as root): under
ROOT (the host's /srv data filesystem) write application logs ``log/<app>/<app>.log`` (the
current log, kept open and appended to once a second, as a running app does) with rotated
``<app>.log.N`` dated N days back, then backup archives ``archive/*.tar.gz`` weeks old, until
the filesystem is full. With ``--live`` the rotated logs are few and recent and the current log
itself fills the disk to 97 %: compressing the rotated logs frees some, but nothing a cleanup
may remove frees enough (a runaway logger needs a human).
"""

import argparse
import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
import time

DAY = 86400.0
CHUNK = 64 * 1024
MAX_SESSIONS = 1000  # a bound in case the server never refuses
APPS = {"shop": (14, 1536 * 1024), "billing": (9, 1024 * 1024)}  # rotations, bytes each
LIVE_ROTATIONS = 2
LIVE_LEAVE = 2 * 1024 * 1024  # 97 % full: room to compress the rotated logs, not enough to heal
ARCHIVE_BYTES = 3 * 1024 * 1024


def notify_ready(status: str) -> None:
    """sd_notify READY=1 (the unit is Type=notify); nothing when not run by systemd."""
    print(status, flush=True)
    address = os.environ.get("NOTIFY_SOCKET", "")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.connect(address)
        sock.sendall(f"READY=1\nSTATUS={status}".encode())


def hold_forever() -> None:
    while True:
        signal.pause()


# --- db-pool -------------------------------------------------------------------------------

def open_session(database: str) -> "subprocess.Popen[str] | None":
    """A psql session idle in transaction, or None when the server refused it."""
    proc = subprocess.Popen(
        ["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-d", database],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    try:
        proc.stdin.write("BEGIN;\nSELECT txid_current();\n\\echo held\n")
        proc.stdin.flush()
    except BrokenPipeError:
        pass
    for line in proc.stdout:
        if line.strip() == "held":
            return proc
    proc.wait()
    print(f"session refused: {proc.stderr.read().strip()}", flush=True)
    return None


def fill_pool(database: str, sessions: int) -> int:
    held: list[subprocess.Popen[str]] = []
    while len(held) < sessions:
        session = open_session(database)
        if session is None:
            break
        held.append(session)
    if not held:
        print("no session could be opened", file=sys.stderr, flush=True)
        return 1
    notify_ready(f"holding {len(held)} sessions idle in transaction on {database}")
    hold_forever()
    return 0


# --- disk ----------------------------------------------------------------------------------

def log_chunks(app: str, count: int = 8) -> list[bytes]:
    """A few 64 KiB blocks of plausible access-log lines (they compress as real logs do)."""
    rng = random.Random(app)
    paths = ("/api/cart", "/api/items", "/api/checkout", "/healthz", "/api/users", "/static/app.js")
    chunks = []
    for _ in range(count):
        lines = []
        size = 0
        while size < CHUNK:
            line = (f"2024-05-{rng.randint(1, 28):02d}T{rng.randint(0, 23):02d}:"
                    f"{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}.{rng.randint(0, 999):03d}Z "
                    f"{rng.choice(('INFO', 'INFO', 'INFO', 'WARN', 'DEBUG'))} {app}"
                    f"[{rng.randint(100, 9999)}]: {rng.choice(('GET', 'POST'))} "
                    f"{rng.choice(paths)}/{rng.randint(1, 99999)} "
                    f"{rng.choice((200, 200, 304, 404))} {rng.randint(1, 900)}ms "
                    f"req={rng.getrandbits(64):016x}\n")
            lines.append(line)
            size += len(line)
        chunks.append("".join(lines).encode()[:CHUNK])
    return chunks


def write_file(path: str, size: int, chunks: list[bytes], age_s: float) -> bool:
    """Write ``size`` bytes of ``chunks`` to ``path`` dated ``age_s`` back; False once full."""
    written = 0
    full = False
    with open(path, "wb") as out:
        try:
            while written < size:
                out.write(chunks[written // CHUNK % len(chunks)])
                written += CHUNK
            out.flush()
        except OSError:  # ENOSPC: the disk is full
            full = True
    when = time.time() - age_s
    with contextlib.suppress(OSError):
        os.utime(path, (when, when))
    return not full


def fill_until(path: str, chunks: list[bytes], leave: int) -> None:
    """Append ``chunks`` to ``path`` until at most ``leave`` bytes of its filesystem are free."""
    with open(path, "ab") as out, contextlib.suppress(OSError):  # or until ENOSPC
        while True:
            fs = os.statvfs(path)
            if fs.f_bavail * fs.f_frsize <= leave:
                return
            for chunk in chunks:
                out.write(chunk)
            out.flush()


def fill_disk(root: str, live: bool) -> int:
    current = {}  # the apps' open current logs, held until the unit stops
    for app, (rotations, size) in APPS.items():
        folder = os.path.join(root, "log", app)
        os.makedirs(folder, exist_ok=True)
        chunks = log_chunks(app)
        for n in range(1, (LIVE_ROTATIONS if live else rotations) + 1):
            write_file(os.path.join(folder, f"{app}.log.{n}"), size, chunks, n * DAY + 3600)
        current[app] = open(  # noqa: SIM115 - held open for the unit's life, as an app does
            os.path.join(folder, f"{app}.log"), "ab", buffering=0)
        current[app].write(chunks[0][:CHUNK // 2])
    if live:
        fill_until(os.path.join(root, "log", "shop", "shop.log"), log_chunks("shop"), LIVE_LEAVE)
    else:
        archive = os.path.join(root, "archive")
        os.makedirs(archive, exist_ok=True)
        week = 1
        while write_file(os.path.join(archive, f"shop-db-week{week:02d}.tar.gz"), ARCHIVE_BYTES,
                         [os.urandom(CHUNK) for _ in range(4)], (7 * week + 1) * DAY):
            week += 1
    notify_ready(f"filled {root} ({'the current log fills it' if live else 'logs and archives'})")
    while True:  # the apps keep logging, a line a second, whether or not it fits
        for app, out in current.items():
            with contextlib.suppress(OSError):
                out.write(f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} INFO {app}: "
                          "GET /healthz 200 1ms\n".encode())
        time.sleep(1.0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    pool = sub.add_parser("db-pool")
    pool.add_argument("database")
    pool.add_argument("--sessions", type=int, default=MAX_SESSIONS,
                      help="stop at this many sessions (default: until refused)")
    disk = sub.add_parser("disk")
    disk.add_argument("root")
    disk.add_argument("--live", action="store_true")
    args = parser.parse_args()
    if args.what == "db-pool":
        return fill_pool(args.database, args.sessions)
    return fill_disk(args.root, args.live)


if __name__ == "__main__":
    sys.exit(main())
