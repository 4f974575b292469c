"""The append-only, hash-chained audit log: every action selfheal takes, in order.

Each record's hash is an HMAC-SHA256 over its own fields and the previous record's hash, keyed
with a secret kept outside the database (``state.audit_key_file``), so editing, deleting or
reordering any record breaks ``verify_chain`` even for someone who can write the database but
cannot read the key. Called by ``store.db.Store`` and by
``selfheal audit verify``. Secrets never go in: callers pass names and outcomes, not variables.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from orchestrator.errors import AuditChainError
from orchestrator.models import AuditRecord

GENESIS = "0" * 64


def canonical(payload: Mapping[str, Any]) -> str:
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)


def load_or_create_key(path: Path) -> bytes:
    """The chain's secret key; created (0600) on first use. Keep it readable only by selfheal."""
    if path.exists():
        key = path.read_bytes().strip()
        if len(key) < 32:
            raise AuditChainError(f"audit key {path} is shorter than 32 bytes; restore it from "
                                  "your backup (a new key cannot verify the old records)")
        return key
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(secrets.token_hex(32).encode())
    return path.read_bytes().strip()


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
