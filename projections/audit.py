"""The `audit` read model: the audit trail, searchable, with the chain checked as it is applied."""

from __future__ import annotations

import msgspec

from core.audit import GENESIS, audit_hash
from core.events import AuditRecorded, Event
from projections.projection import Park, Statement

_INSERT = (
    "INSERT INTO audit (seq, at, actor, category, action, target, outcome, details, hash, prev_hash, chain_ok)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?,"
    f" coalesce((SELECT hash FROM audit ORDER BY seq DESC LIMIT 1), '{GENESIS}') = ?)"
)


_json = msgspec.json.Encoder()  # compact and several times faster than json.dumps: rebuilds replay millions


class Audit:
    name: str = "audit"
    version: int = 3  # 2: details stored as compact JSON; 3: indexes by (actor, seq) and (target, seq)
    sources: tuple[str, ...] = ("mesh.audit.>",)
    schema: tuple[str, ...] = (
        "CREATE TABLE IF NOT EXISTS audit ("
        " seq INTEGER PRIMARY KEY, at TEXT NOT NULL, actor TEXT NOT NULL, category TEXT NOT NULL,"
        " action TEXT NOT NULL, target TEXT NOT NULL, outcome TEXT NOT NULL, details TEXT NOT NULL,"
        " hash TEXT NOT NULL, prev_hash TEXT NOT NULL, chain_ok INTEGER NOT NULL)",
        # A search pages newest first within a window of sequence numbers (projections.audit_queries):
        # these walk one actor's or one device's entries in that order, without a sort.
        "CREATE INDEX IF NOT EXISTS audit_by_actor ON audit (actor, seq)",
        "CREATE INDEX IF NOT EXISTS audit_by_target ON audit (target, seq)",
    )

    def apply(self, event: Event, seq: int) -> list[Statement]:
        if not isinstance(event, AuditRecorded):
            raise Park(f"{event.tag} on an audit subject is not an audit event")
        # chain_ok: this entry names the hash of the entry applied just before it (or the genesis hash).
        values = (
            seq,
            event.occurred_at.isoformat(),
            event.actor,
            event.category,
            event.action,
            event.target,
            event.outcome,
            _json.encode(event.details).decode(),
            audit_hash(event),
            event.prev_hash,
            event.prev_hash,
        )
        return [(_INSERT, values)]
