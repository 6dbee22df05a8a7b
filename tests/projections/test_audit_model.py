"""The audit read model checks the chain as it applies it and answers searches."""

from __future__ import annotations

import secrets
from pathlib import Path

import msgspec

from core.store import EventStore
from projections.audit import Audit
from projections.audit_queries import AuditSearch, audit_search
from projections.reading import ReadModels
from projections.runner import ProjectionRunner

KEY = secrets.token_hex(32)


async def test_the_chain_is_checked_and_entries_are_searchable(store: EventStore, tmp_path: Path) -> None:
    trail = store.audit
    await trail.record(actor="ops-ann", category="command", action="command.send", target="dev-9")
    await trail.record(actor="control", category="identity", action="device.revoke", target="dev-9")
    runner = ProjectionRunner(Audit(), store, directory=tmp_path, key=KEY)
    await runner.open()
    try:
        await runner.catch_up()
    finally:
        await runner.close()
    models = ReadModels(tmp_path, KEY)
    everything = msgspec.json.decode(await audit_search(models, AuditSearch(limit=1000)))
    assert everything["entries"] and all(e["chain_ok"] for e in everything["entries"])
    mine = msgspec.json.decode(await audit_search(models, AuditSearch(actor="ops-ann")))
    assert [e["action"] for e in mine["entries"]] == ["command.send"]
    about = msgspec.json.decode(await audit_search(models, AuditSearch(device="dev-9", action="device.revoke")))
    assert [e["actor"] for e in about["entries"]] == ["control"]
