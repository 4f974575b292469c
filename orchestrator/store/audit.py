"""The append-only, hash-chained audit log: every action selfheal takes, in order.

Each record's hash is an HMAC-SHA256 over its own fields and the previous record's hash, keyed
with a secret kept outside the database (``state.audit_key_file``), so editing, deleting or
reordering any record breaks ``verify_chain`` even for someone who can write the database but
cannot read the key. The head row (newest seq and hash) is keyed too (``head_seal``), so deleting
the tail and rewriting the head to match is caught. A marker file beside the key
(``chain_marker``) says the log has had records, so an emptied log never verifies as intact. The
key is created only for a store that has never recorded anything; a missing key is otherwise an
error with a hint, never silently replaced. Called by ``store.db.Store``, ``wiring.store_for``
and ``selfheal audit``. Secrets never go in: callers pass names and outcomes, not variables.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from orchestrator.errors import AuditChainError
from orchestrator.models import AuditRecord

GENESIS = "0" * 64


def canonical(payload: Mapping[str, Any]) -> str:
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)


def read_key(path: Path) -> bytes | None:
    """The chain's secret key, or None when the file does not exist."""
    if not path.exists():
        return None
    key = path.read_bytes().strip()
    if len(key) < 32:
        raise AuditChainError(f"audit key {path} is shorter than 32 bytes; restore it from "
                              "your backup (a new key cannot verify the old records)")
    return key


def create_key(path: Path) -> bytes:
    """A new key (0600); if another process made one first, that one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "wb") as handle:
            handle.write(secrets.token_hex(32).encode())
    key = read_key(path)
    assert key is not None
    return key


def chain_marker(key_path: Path) -> Path:
    """The file that says the log keyed by ``key_path`` has had records."""
    return key_path.with_name(key_path.name + ".chain")


def write_marker(marker: Path) -> None:
    if marker.exists():
        return
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(
        "selfheal: the audit log keyed by the file beside this one has had records since "
        f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}.\nKeep this file: `selfheal "
        "audit verify` uses it to tell an emptied log from a new one.\n")


def key_for_new_chain(path: Path, history: str | None) -> bytes:
    """Create the key for a store that has never recorded anything; refuse otherwise.

    ``history`` says what the database holds that was keyed (None: nothing). A key is never
    made silently where records exist or existed: verification would then fail for good.
    """
    marker = chain_marker(path)
    if history:
        raise AuditChainError(
            f"audit key {path} is missing but the database holds {history}: restore the key "
            "from your backup (a new key cannot verify those records). If it is lost for good, "
            "move the database aside as evidence, then run `selfheal audit init-key`")
    if marker.exists():
        raise AuditChainError(
            f"audit key {path} is missing and {marker} says this log has had records, but the "
            "database holds none: restore the key and the database from your backup, or, to "
            "start a new chain on purpose, run `selfheal audit init-key`")
    return create_key(path)


def start_new_chain(path: Path, history: str | None) -> tuple[Path, ...]:
    """``selfheal audit init-key``: a new key for a database with no records; returns the files
    moved aside (an old key may still verify an archived database, so it is never deleted)."""
    if history:
        raise AuditChainError(
            f"the database holds {history}; a new key cannot verify them: restore {path} from "
            "your backup, or move the database aside before starting a new chain")
    stamp = time.strftime("%Y%m%dT%H%M%S")
    moved = []
    for old in (path, chain_marker(path)):
        if old.exists():
            aside = old.with_name(f"{old.name}.replaced-{stamp}")
            old.rename(aside)
            moved.append(aside)
    create_key(path)
    return tuple(moved)


def head_seal(key: bytes, seq: int, last_hash: str) -> str:
    """The keyed seal of the head row: whoever cannot read the key cannot move the head."""
    body = json.dumps(["audit-head", seq, last_hash], separators=(",", ":"))
    return hmac.new(key, body.encode(), hashlib.sha256).hexdigest()


def record_hash(key: bytes, seq: int, at: float, actor: str, action: str, subject: str,
                payload: str, prev_hash: str) -> str:
    body = json.dumps([seq, repr(at), actor, action, subject, payload, prev_hash],
                      separators=(",", ":"))
    return hmac.new(key, body.encode(), hashlib.sha256).hexdigest()


def verify_chain(records: Iterable[AuditRecord], key: bytes) -> int:
    """The number of records checked; AuditChainError at the first broken link."""
    prev = GENESIS
    expected_seq = 1
    count = 0
    for r in records:
        if r.seq != expected_seq:
            raise AuditChainError(f"audit record {expected_seq} is missing or out of order "
                                  f"(found {r.seq}): records were deleted or reordered")
        if r.prev_hash != prev:
            raise AuditChainError(f"audit record {r.seq}: previous-hash link broken: a record "
                                  "before it was edited, deleted or reordered")
        digest = record_hash(key, r.seq, r.at, r.actor, r.action, r.subject,
                             canonical(r.payload), r.prev_hash)
        if not hmac.compare_digest(digest, r.hash):
            raise AuditChainError(f"audit record {r.seq} ({r.action} {r.subject}) was edited: "
                                  "its hash does not match its content")
        prev = r.hash
        expected_seq += 1
        count += 1
    return count
