"""edge.state: the ledger, the outbox and config values in one LMDB file, durable across crashes."""

from __future__ import annotations

import asyncio
import os
import signal
import stat
import subprocess
import sys
import textwrap
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from core.events import (
    CommandAccepted,
    CommandEvent,
    CommandFailed,
    CommandRunning,
    CommandSucceeded,
    Event,
    TelemetryReported,
    decode,
)
from edge.errors import StateError
from edge.state import AgentState, locate, open_environment, tables_of
from tests.edge.samples import DEVICE, T0

ROOT = Path(__file__).resolve().parents[2]


def step(kind: type[CommandEvent], command_id: str = "cmd-1", **fields: Any) -> Event:
    return kind(command_id=command_id, device_id=DEVICE, actor=DEVICE, **fields)


def telemetry(value: float) -> TelemetryReported:
    return TelemetryReported(device_id=DEVICE, metrics={"temp": value}, actor=DEVICE)


def outbox(state: AgentState) -> list[Event]:
    return [decode(item.payload) for item in state.pending(1000)]


# -- The file -------------------------------------------------------------------------------


def test_the_file_and_its_lock_are_private(tmp_path: Path) -> None:
    path = tmp_path / "state.lmdb"
    with AgentState(path):
        pass

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(Path(f"{path}-lock").stat().st_mode) == 0o600


def test_an_existing_file_is_made_private(tmp_path: Path) -> None:
    path = tmp_path / "state.lmdb"
    AgentState(path).close()
    os.chmod(path, 0o644)

    AgentState(path).close()

    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_an_unusable_path_is_a_state_error(tmp_path: Path) -> None:
    with pytest.raises(StateError) as caught:
        AgentState(tmp_path / "absent" / "state.lmdb")

    assert str(caught.value).startswith(f"could not open the state file {tmp_path}/absent/state.lmdb: ")
    assert "No such file or directory" in str(caught.value)


def test_a_newer_format_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "state.lmdb"
    AgentState(path).close()
    env = open_environment(path)
    meta = tables_of(env).meta
    with env.begin(write=True) as txn:
        txn.put(b"format", b"99", db=meta)
    env.close()

    with pytest.raises(StateError, match="written by a newer agent"):
        AgentState(path)


def test_a_name_an_older_agent_was_configured_with_means_the_lmdb_file_beside_it() -> None:
    assert locate(Path("/d/agent-state.sqlite")) == (Path("/d/agent-state.lmdb"), Path("/d/agent-state.sqlite"))
    assert locate(Path("/d/agent-state.lmdb")) == (Path("/d/agent-state.lmdb"), Path("/d/agent-state.sqlite"))
    assert locate(Path("/d/state")) == (Path("/d/state"), Path("/d/state.sqlite"))


# -- The ledger -----------------------------------------------------------------------------


def test_a_command_goes_new_started_finished(state: AgentState) -> None:
    assert state.ledger_state("cmd-1") == "new"

    state.mark_started("cmd-1", [step(CommandAccepted), step(CommandRunning)])
    assert state.ledger_state("cmd-1") == "started"

    state.finish("cmd-1", [step(CommandSucceeded, result={"ok": 1})])
    assert state.ledger_state("cmd-1") == "finished"
    assert [type(e) for e in outbox(state)] == [CommandAccepted, CommandRunning, CommandSucceeded]


def test_a_command_never_started_can_finish(state: AgentState) -> None:
    state.finish("cmd-1", [step(CommandFailed, error="x")])

    assert state.ledger_state("cmd-1") == "finished"
    assert state.outbox_size() == 1


def test_a_command_starts_once(state: AgentState) -> None:
    state.mark_started("cmd-1")

    with pytest.raises(StateError, match="already in the ledger"):
        state.mark_started("cmd-1", [step(CommandAccepted)])

    assert state.outbox_size() == 0


def test_a_command_finishes_once_and_the_second_finish_adds_nothing(state: AgentState) -> None:
    state.finish("cmd-1", [step(CommandSucceeded)])

    with pytest.raises(StateError, match="already finished"):
        state.finish("cmd-1", [step(CommandSucceeded)])

    assert state.outbox_size() == 1


def test_finish_is_one_transaction(state: AgentState) -> None:
    accepted = step(CommandAccepted)
    state.mark_started("cmd-1", [accepted])

    # The outbox refuses the second event (same event id), so the finished mark must not stay either.
    with pytest.raises(StateError, match="queued twice"):
        state.finish("cmd-1", [step(CommandSucceeded), accepted])

    assert state.ledger_state("cmd-1") == "started"
    assert outbox(state) == [accepted]


def test_prune_forgets_old_finished_commands_only(state: AgentState) -> None:
    state.finish("old", [], now=T0 - timedelta(days=8))
    state.finish("recent", [], now=T0 - timedelta(days=1))
    state.mark_started("stuck", now=T0 - timedelta(days=30))

    assert state.prune(T0 - timedelta(days=7)) == 1

    assert state.ledger_state("old") == "new"
    assert state.ledger_state("recent") == "finished"
    assert state.ledger_state("stuck") == "started"


# -- The outbox -----------------------------------------------------------------------------


def test_the_outbox_keeps_order_across_kinds(state: AgentState) -> None:
    events: list[Event] = [telemetry(1.0), step(CommandAccepted, "c-1"), step(CommandRunning, "c-1")]
    state.enqueue(events[:1])
    state.mark_started("c-1", events[1:])
    events += [telemetry(2.0), step(CommandSucceeded, "c-1")]
    state.enqueue(events[3:4])
    state.finish("c-1", events[4:])

    items = state.pending(10)

    assert [decode(item.payload) for item in items] == events
    assert [item.event_id for item in items] == [e.event_id for e in events]
    assert [item.subject for item in items] == [e.subject() for e in events]
    assert items[0].subject == "mesh.evt.device.pump-7.telemetry"
    assert [item.id for item in items] == sorted(item.id for item in items)


def test_pending_pages_and_mark_sent_removes(state: AgentState) -> None:
    events = [telemetry(float(i)) for i in range(5)]
    state.enqueue(events)

    first = state.pending(2)
    state.mark_sent([item.id for item in first])

    assert [item.event_id for item in first] == [e.event_id for e in events[:2]]
    assert state.outbox_size() == 3
    assert [item.event_id for item in state.pending(10)] == [e.event_id for e in events[2:]]


def test_ids_keep_growing_after_the_outbox_empties(state: AgentState) -> None:
    state.enqueue([telemetry(1.0)])
    [first] = state.pending()
    state.mark_sent([first.id])
    state.enqueue([telemetry(2.0)])

    [second] = state.pending()

    assert second.id > first.id
    assert state.pending() == [second]


# -- Config values --------------------------------------------------------------------------


def test_config_values(state: AgentState) -> None:
    with pytest.raises(KeyError):
        state.config_get("rate")

    state.config_set("rate", 5)
    state.config_set("rate", {"hz": [1, 2]})
    state.config_set("name", "north")

    assert state.config_get("rate") == {"hz": [1, 2]}
    assert state.config_items() == {"name": "north", "rate": {"hz": [1, 2]}}


# -- Durability -----------------------------------------------------------------------------


def test_everything_survives_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "state.lmdb"
    with AgentState(path) as state:
        state.mark_started("cmd-1", [step(CommandAccepted)])
        state.enqueue([telemetry(3.0)])
        state.config_set("k", [1])

    with AgentState(path) as reopened:
        assert reopened.ledger_state("cmd-1") == "started"
        assert [type(e) for e in outbox(reopened)] == [CommandAccepted, TelemetryReported]
        assert reopened.config_get("k") == [1]


CRASHING_AGENT = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    from core.events import CommandAccepted, CommandRunning, CommandSucceeded, TelemetryReported
    from edge.state import AgentState, locate, open_environment, tables_of

    state = AgentState(Path(sys.argv[1]))
    meta = dict(command_id="cmd-1", device_id="pump-7", actor="pump-7")
    state.enqueue([TelemetryReported(device_id="pump-7", metrics={"temp": 21.5})])
    state.mark_started("cmd-1", [CommandAccepted(**meta), CommandRunning(**meta)])
    state.config_set("rate", 50)
    state.finish("cmd-1", [CommandSucceeded(result={"ok": True}, **meta)])
    os.kill(os.getpid(), signal.SIGKILL)  # no close(), no atexit, no flush: just gone
    """
)


def test_a_finish_survives_sigkill(tmp_path: Path) -> None:
    path = tmp_path / "state.lmdb"

    crashed = subprocess.run(
        [sys.executable, "-c", CRASHING_AGENT, str(path)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        timeout=30,
        check=False,
    )

    assert crashed.returncode == -signal.SIGKILL, crashed.stderr.decode()
    with AgentState(path) as state:
        assert state.ledger_state("cmd-1") == "finished"
        events = outbox(state)
        assert [type(e) for e in events] == [TelemetryReported, CommandAccepted, CommandRunning, CommandSucceeded]
        assert events[-1].result == {"ok": True}  # type: ignore[attr-defined]
        assert state.config_get("rate") == 50


# -- Awaited writes: off the event loop, grouped, each on disk when its await returns ------------


def ledger(state: AgentState) -> dict[str, str]:
    """Every command in the ledger and its state, as a new read transaction sees it: what is committed."""

    def scan(txn: Any) -> list[str]:
        return [bytes(key).decode() for key in txn.cursor(db=state.tables.ledger).iternext(values=False)]

    return {command_id: state.ledger_state(command_id) for command_id in state.read("list the ledger", scan)}


async def test_concurrent_admits_are_each_on_disk_when_their_await_returns(tmp_path: Path) -> None:
    path = tmp_path / "state.lmdb"
    seen: dict[str, dict[str, str]] = {}

    async def admit(command_id: str) -> None:
        await state.amark_started(command_id, [step(CommandAccepted, command_id), step(CommandRunning, command_id)])
        seen[command_id] = ledger(state)  # the moment it returned; a read sees committed writes only

    with AgentState(path) as state:
        await asyncio.gather(*(admit(f"cmd-{i}") for i in range(100)))

        assert all(seen[command_id].get(command_id) == "started" for command_id in seen)
        assert len(seen) == 100
        assert state.outbox_size() == 200  # a read sees every awaited write
        assert state.writer.writes == 100 and 1 <= state.writer.commits <= 100


async def test_awaited_writes_keep_the_rules_of_the_blocking_ones(state: AgentState) -> None:
    await state.amark_started("cmd-1", [step(CommandAccepted)])
    outcomes = await asyncio.gather(
        state.amark_started("cmd-1", [step(CommandRunning)]),  # started twice: refused, alone
        state.afinish("cmd-2", [step(CommandSucceeded, "cmd-2")]),
        return_exceptions=True,
    )
    await state.afinish("cmd-1", [step(CommandSucceeded)])
    with pytest.raises(StateError, match="already finished"):
        await state.afinish("cmd-1", [step(CommandSucceeded)])

    assert isinstance(outcomes[0], StateError) and "already in the ledger" in str(outcomes[0])
    assert outcomes[1] is None
    assert [type(e) for e in outbox(state)] == [CommandAccepted, CommandSucceeded, CommandSucceeded]
    state.note_sent(state.pending())
    await state.aenqueue([telemetry(1.0)])
    assert [type(e) for e in outbox(state)] == [TelemetryReported]


def entries_in_file(state: AgentState) -> int:
    """Every entry of the outbox, those noted sent but not deleted yet included."""
    return int(state.read("count the entries", lambda txn: txn.stat(state.tables.outbox)["entries"]))


async def test_what_was_noted_sent_is_skipped_at_once_and_its_rows_go_with_the_next_write(
    tmp_path: Path,
) -> None:
    path = tmp_path / "state.lmdb"
    state = AgentState(path)
    try:
        await state.aenqueue([telemetry(1.0), telemetry(2.0), telemetry(3.0)])
        first_two = state.pending(2)
        state.note_sent(first_two)

        assert [e.metrics for e in outbox(state)] == [{"temp": 3.0}]  # type: ignore[attr-defined]
        assert state.outbox_size() == 1
        assert entries_in_file(state) == 3 and state.sent_unforgotten()  # nothing written yet
        await state.amark_started("cmd-1", [step(CommandAccepted)])  # a write the agent makes anyway
        assert entries_in_file(state) == 2 and not state.sent_unforgotten()

        state.note_sent(state.pending())
        await state.aforget_sent()  # what an idle outbox does
        assert entries_in_file(state) == 0
    finally:
        state.close()


async def test_a_refused_write_keeps_the_rows_it_would_have_deleted(state: AgentState) -> None:
    await state.amark_started("cmd-1", [step(CommandAccepted)])
    state.note_sent(state.pending())
    with pytest.raises(StateError, match="already in the ledger"):
        await state.amark_started("cmd-1", [step(CommandRunning)])

    assert state.sent_unforgotten()  # rolled back with the refused write: the next one deletes them
    await state.aenqueue([telemetry(1.0)])
    assert not state.sent_unforgotten()
    assert [type(e) for e in outbox(state)] == [TelemetryReported]


async def test_closing_forgets_what_was_sent_and_a_new_state_sends_only_the_rest(tmp_path: Path) -> None:
    path = tmp_path / "state.lmdb"
    state = AgentState(path)
    await state.aenqueue([telemetry(1.0), telemetry(2.0)])
    state.note_sent(state.pending(1))
    state.close()

    with AgentState(path) as again:
        assert [e.metrics for e in outbox(again)] == [{"temp": 2.0}]  # type: ignore[attr-defined]
        assert entries_in_file(again) == 1


def test_a_state_that_only_reads_and_blocks_starts_no_thread(state: AgentState) -> None:
    state.mark_started("cmd-1")
    state.ledger_state("cmd-1")

    assert not state.writer.started()


ACKNOWLEDGING_AGENT = textwrap.dedent(
    """
    import asyncio, os, signal, sys
    from pathlib import Path
    from core.events import CommandSucceeded
    from edge.state import AgentState, locate, open_environment, tables_of

    async def main():
        state = AgentState(Path(sys.argv[1]))
        acknowledged = 0

        async def finish(i):
            nonlocal acknowledged
            meta = dict(command_id=f"cmd-{i}", device_id="pump-7", actor="pump-7")
            await state.afinish(f"cmd-{i}", [CommandSucceeded(result={"i": i}, **meta)])
            print(f"cmd-{i}", flush=True)  # acknowledged: the agent would ack the command now
            acknowledged += 1
            if acknowledged == 200:  # with about as many still queued or in a batch
                os.kill(os.getpid(), signal.SIGKILL)

        await asyncio.gather(*(finish(i) for i in range(400)))

    asyncio.run(main())
    """
)


def test_every_acknowledged_write_survives_sigkill_while_others_are_in_flight(tmp_path: Path) -> None:
    path = tmp_path / "state.lmdb"

    crashed = subprocess.run(
        [sys.executable, "-c", ACKNOWLEDGING_AGENT, str(path)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        timeout=60,
        check=False,
    )

    assert crashed.returncode == -signal.SIGKILL, crashed.stderr.decode()
    acknowledged = crashed.stdout.decode().split()
    assert len(acknowledged) == 200
    with AgentState(path) as state:
        finished = ledger(state)
        events = outbox(state)
    assert all(finished.get(command_id) == "finished" for command_id in acknowledged)
    # Each write is all or nothing: a finished mark and its outcome event, or neither.
    reported = [event.command_id for event in events]  # type: ignore[attr-defined]
    assert sorted(reported) == sorted(finished) and len(set(reported)) == len(reported)
