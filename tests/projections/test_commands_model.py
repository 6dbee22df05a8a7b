"""The commands read model: its SQL fold is order-independent across its two streams, and it runs on the mesh."""

from __future__ import annotations

import itertools
import json
import secrets
import sqlite3
import uuid
from pathlib import Path

from core.events import (
    CommandAccepted,
    CommandIssued,
    CommandRunning,
    CommandSucceeded,
    Event,
)
from core.store import EventStore
from projections.commands import Commands
from projections.runner import ProjectionRunner


def final_state(events: list[Event]) -> tuple[object, ...]:
    model = Commands()
    db = sqlite3.connect(":memory:")
    for statement in model.schema:
        db.execute(statement)
    for seq, event in enumerate(events, 1):
        for sql, params in model.apply(event, seq):
            db.execute(sql, params)
    row = db.execute("SELECT name, state, result FROM commands").fetchone()
    db.close()
    return tuple(row)


def test_the_furthest_step_wins_whatever_order_the_streams_are_read_in() -> None:
    issued = CommandIssued(command_id="c-1", device_id="d", name="ping")
    steps = [
        CommandAccepted(command_id="c-1", device_id="d"),
        CommandRunning(command_id="c-1", device_id="d"),
        CommandSucceeded(command_id="c-1", device_id="d", result={"pong": True}),
    ]
    # Within a stream the order is kept; across the two streams any interleaving may happen.
    for position in range(len(steps) + 1):
        mixed = [*steps[:position], issued, *steps[position:]]
        assert final_state(mixed) == ("ping", "succeeded", json.dumps({"pong": True}))
    for late in itertools.permutations(steps[:2]):
        assert final_state([issued, steps[2], *late])[1] == "succeeded"  # a terminal state is final


async def test_the_commands_model_follows_both_streams(store: EventStore, tmp_path: Path) -> None:
    command_id = f"c-{uuid.uuid4().hex[:8]}"
    issued = CommandIssued(command_id=command_id, device_id="dev-m", name="echo", args={"x": 1})
    await store.append(issued)
    await store.append(
        [
            CommandAccepted(command_id=command_id, device_id="dev-m"),
            CommandSucceeded(command_id=command_id, device_id="dev-m", result={"x": 1}),
        ]
    )
    runner = ProjectionRunner(Commands(), store, directory=tmp_path, key=secrets.token_hex(32))
    await runner.open()
    try:
        await runner.catch_up()
        assert runner.db is not None
        rows = await runner.db.execute_fetchall(
            "SELECT name, args, state, result FROM commands WHERE command_id = ?", (command_id,)
        )
        assert [tuple(r) for r in rows] == [("echo", '{"x": 1}', "succeeded", '{"x": 1}')]
        positions = await runner.positions()
        assert positions["mesh.cmd.>"] == await store.last_sequence("COMMANDS")
    finally:
        await runner.close()
