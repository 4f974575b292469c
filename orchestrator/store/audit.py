"""The append-only, hash-chained audit log: every action selfheal takes, in order.

Each record's hash covers its own fields and the previous record's hash, so editing, deleting or
reordering any record breaks ``verify_chain``. Called by ``store.db.Store`` and by
``selfheal audit verify``. Secrets never go in: callers pass names and outcomes, not variables.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

from orchestrator.errors import AuditChainError
from orchestrator.models import AuditRecord

GENESIS = "0" * 64


def canonical(payload: Mapping[str, Any]) -> str:
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)


def record_hash(seq: int, at: float, actor: str, action: str, subject: str, payload: str,
                prev_hash: str) -> str:
    body = json.dumps([seq, repr(at), actor, action, subject, payload, prev_hash],
                      separators=(",", ":"))
    return hashlib.sha256(body.encode()).hexdigest()


def verify_chain(records: Iterable[AuditRecord]) -> int:
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
        digest = record_hash(r.seq, r.at, r.actor, r.action, r.subject,
                             canonical(r.payload), r.prev_hash)
        if digest != r.hash:
            raise AuditChainError(f"audit record {r.seq} ({r.action} {r.subject}) was edited: "
                                  "its hash does not match its content")
        prev = r.hash
        expected_seq += 1
        count += 1
    return count
