"""The audit trail: who did what, to what, with what outcome."""

from __future__ import annotations

from typing import Any

from core import subjects
from core.events.base import Event


class AuditRecorded(Event, frozen=True, kw_only=True, tag="audit.recorded.v1"):
    """One audited action. `prev_hash` chains each entry to the one before it."""

    category: str  # "command", "query", "identity", "connection", ...
    action: str
    target: str = ""
    outcome: str = "ok"  # "ok" or "denied" or "error"
    details: dict[str, Any] = {}
    prev_hash: str = ""

    def subject(self) -> str:
        return subjects.audit(self.category, self.actor)
