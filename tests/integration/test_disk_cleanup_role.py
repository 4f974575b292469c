"""The disk_cleanup role with real Ansible on a local-connection host, in a temporary folder.

What it may and may not touch, checked file by file: old rotated logs and archives go, younger
rotated logs are gzipped (same mtime, original gone only once the .gz tested good), the current
log and any file a process holds open stay, and nothing reached through a symlink is touched,
neither the link nor its target: a symlink inside a log folder to a folder or a file outside, a
configured folder that is itself a symlink, a hard link to a file outside. Rollback puts every
compressed log back byte for byte. The same role on a lab host: tests/e2e/test_disk.py.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import sys
import time
from pathlib import Path

import pytest
import yaml

from orchestrator.config import PROJECT_ROOT, AnsibleSettings
from orchestrator.execute.inventory import load_inventory
from orchestrator.execute.runner import AnsibleExecutor
from orchestrator.models import OutcomeStatus, Plan

pytestmark = pytest.mark.integration
DAY = 86400


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write(path: Path, size: int, age_days: float) -> Path:
    """A file of ``size`` bytes of log lines, last changed ``age_days`` ago."""
    path.parent.mkdir(parents=True, exist_ok=True)
    line = f"{path.name} GET /api/cart 200 12ms\n".encode()
    path.write_bytes((line * (size // len(line) + 1))[:size])
    when = time.time() - age_days * DAY
    os.utime(path, (when, when))
    return path


class Host:
    """A fake data filesystem under tmp: srv/log, srv/archive, and things outside it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.srv = root / "srv"
        self.outside = root / "outside"
        self.snapshots = root / "snapshots"


@pytest.fixture
def host(tmp_path: Path) -> Host:
    h = Host(tmp_path / "host")
    log, archive = h.srv / "log" / "shop", h.srv / "archive"
    write(log / "shop.log", 50_000, 0)                  # the current log
    write(log / "shop.log.1", 200_000, 1)               # young: compressed
    write(log / "shop.log.2", 200_000, 2)
    write(log / "shop.log.9", 200_000, 9)               # old: deleted
    write(log / "shop.log.10.gz", 30_000, 10)
    write(log / "shop[1].log.9", 20_000, 9)             # names find must not read as patterns
    write(log / "we*ird?.log.1", 20_000, 1)
    write(archive / "db-week01.tar.gz", 300_000, 8)
    write(archive / "db-week00.tar.gz", 300_000, 1)     # too young to delete, not a log
    # outside the configured folders, with names the patterns match, all old
    write(h.outside / "etc" / "secret.log.5", 1000, 30)
    write(h.outside / "precious.tar.gz", 1000, 30)
    write(h.outside / "linked.log.3", 1000, 30)
    write(h.outside / "hardlinked.log.4", 1000, 30)
    (log / "etc-link").symlink_to(h.outside / "etc")                 # a folder outside
    (log / "passwd.log.7").symlink_to(h.outside / "precious.tar.gz")  # a file outside
    os.link(h.outside / "hardlinked.log.4", log / "hard.log.4")
    (h.srv / "linked-log").symlink_to(h.outside)                     # a configured symlink
    for link in (log / "etc-link", log / "passwd.log.7", h.srv / "linked-log"):
        when = time.time() - 30 * DAY
        os.utime(link, (when, when), follow_symlinks=False)
    return h


def executor(host: Host, tmp_path: Path) -> AnsibleExecutor:
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(yaml.safe_dump({"all": {"hosts": {"localhost": {
        "ansible_connection": "local",
        "ansible_python_interpreter": sys.executable,
        "disk_cleanup_paths": [str(host.srv / "log"), str(host.srv / "archive"),
                               str(host.srv / "linked-log"), str(host.srv / "missing")],
        "disk_cleanup_snapshot_dir": str(host.snapshots),
        "disk_cleanup_journal_max_size": "",  # never the controller's own journal
    }}}}))
    return AnsibleExecutor(AnsibleSettings(project_dir=PROJECT_ROOT / "ansible"),
                           load_inventory(inventory), tmp_path / "state" / "runs")


def plan(host: Host, **extra: str) -> Plan:
    return Plan("disk_full", "disk_cleanup", "disk_cleanup", ("localhost",),
                {"disk_cleanup_mountpoint": str(host.root), **extra}, 1, 0, False, "disk_free")


def files(root: Path) -> dict[str, float]:
    """Every path under root (links not followed) with its mtime."""
    found = {}
    for folder, dirs, names in os.walk(root):
        for name in dirs + names:
            path = Path(folder) / name
            found[str(path.relative_to(root))] = path.lstat().st_mtime
    return found


def test_cleanup_deletes_and_compresses_only_what_it_may(host: Host, tmp_path: Path) -> None:
    outside_before = {p: sha256(host.outside / p) for p, _ in files(host.outside).items()
                      if (host.outside / p).is_file()}
    young = {n: sha256(host.srv / "log" / "shop" / n)
             for n in ("shop.log.1", "shop.log.2", "we*ird?.log.1")}
    mtimes = files(host.srv)
    with open(host.srv / "archive" / "db-week01.tar.gz", "rb"):  # a process holds it open
        outcome = executor(host, tmp_path).run(plan(host))
        manifest = json.loads((host.snapshots / "manifest.json").read_text())
        again = executor(host, tmp_path).run(plan(host))
    assert outcome.status is OutcomeStatus.SUCCEEDED, outcome.messages
    after = files(host.srv)
    log = "log/shop"
    for gone in (f"{log}/shop.log.9", f"{log}/shop.log.10.gz", f"{log}/shop.log.1",
                 f"{log}/shop.log.2", f"{log}/shop[1].log.9", f"{log}/we*ird?.log.1"):
        assert gone not in after
    for kept in (f"{log}/shop.log", "archive/db-week00.tar.gz", "archive/db-week01.tar.gz",
                 f"{log}/etc-link", f"{log}/passwd.log.7", f"{log}/hard.log.4", "linked-log"):
        assert kept in after, f"{kept} was removed"
    for name, digest in young.items():  # compressed: same content, same date
        gz = host.srv / log / f"{name}.gz"
        assert hashlib.sha256(gzip.decompress(gz.read_bytes())).hexdigest() == digest
        assert after[f"{log}/{name}.gz"] == mtimes[f"{log}/{name}"]
    assert (host.srv / log / "etc-link").is_symlink()
    assert (host.srv / log / "passwd.log.7").is_symlink()
    assert {p: sha256(host.outside / p) for p in outside_before} == outside_before
    assert files(host.outside).keys() >= outside_before.keys()
    assert sorted(Path(f["path"]).name for f in manifest["delete"]) == [
        "shop.log.10.gz", "shop.log.9", "shop[1].log.9"]  # the open archive is not planned
    assert str(host.srv / "archive" / "db-week01.tar.gz") in manifest["open_files_left"]
    assert str(host.srv / "linked-log") in manifest["skipped_paths"]
    assert again.status is OutcomeStatus.SUCCEEDED and again.changed_hosts == ()  # idempotent
    assert not (host.snapshots / "manifest.json").exists()  # nothing done: nothing to undo


def test_rollback_restores_every_compressed_log(host: Host, tmp_path: Path) -> None:
    shop = host.srv / "log" / "shop"
    before = {n: (sha256(shop / n), (shop / n).stat().st_mtime)
              for n in ("shop.log.1", "shop.log.2", "we*ird?.log.1")}
    run = executor(host, tmp_path)
    assert run.run(plan(host)).status is OutcomeStatus.SUCCEEDED
    assert not (shop / "shop.log.1").exists()
    rolled = run.run(plan(host), "rollback")
    assert rolled.status is OutcomeStatus.SUCCEEDED, rolled.messages
    assert {n: (sha256(shop / n), (shop / n).stat().st_mtime) for n in before} == before
    assert not (shop / "shop.log.1.gz").exists()
    assert not (shop / "shop.log.9").exists()  # deleted: not restorable, and reported as such


def test_verify_fails_when_too_little_is_freed(host: Host, tmp_path: Path) -> None:
    outcome = executor(host, tmp_path).run(plan(host, disk_cleanup_min_free_pct="101"))
    assert outcome.status is OutcomeStatus.FAILED
    assert any("free, want 101%" in m for m in outcome.messages), outcome.messages


def test_check_mode_changes_nothing(host: Host, tmp_path: Path) -> None:
    before = files(host.root)
    outcome = executor(host, tmp_path).run(plan(host), check=True)
    assert outcome.status is OutcomeStatus.SUCCEEDED, outcome.messages
    assert files(host.root) == before
