"""The update record's tables: kept across a restart."""

from __future__ import annotations

from pathlib import Path

from core.updates.states import UpdateState
from edge.state import AgentState
from edge.updates.record import Records


async def test_a_record_and_the_installed_versions_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "agent-state.lmdb"
    with AgentState(path) as state:
        records = Records(state)
        record = await records.begin("c-1", "app", "1.0")
        assert await records.begin("c-1", "app", "9.9") == record  # the command's record, not a new one
        record = await records.move(record, UpdateState.COMMITTING, prepared={"slot": "b", "previous_slot": "a"})
        await records.commit(record)
        await records.move(await records.begin("c-2", "app", "2.0"), UpdateState.REBOOTING, prepared={"slot": "a"})

    with AgentState(path) as state:
        records = Records(state)
        assert records.installed() == {"app": "1.0"}
        committed = records.get("c-1")
        assert committed is not None and committed.state == UpdateState.COMMITTED
        assert committed.prepared == {"slot": "b", "previous_slot": "a"}
        [open_one] = records.unended()
        assert (open_one.command_id, open_one.state, open_one.previous) == ("c-2", UpdateState.REBOOTING, "1.0")
