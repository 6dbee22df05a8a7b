"""`up` keeps its children running: restarts with backoff, and gives up loudly when they keep crashing."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest

from mahavishnu.runtime.supervisor import GaveUp, RestartPolicy, keep_running
from tests.mahavishnu.cli_harness import server_pid, start_up, stop_up
from tests.waiting import wait_until

QUICK = RestartPolicy(initial=0.001, maximum=0.002, max_crashes=3, window=60)


async def test_a_crashed_service_is_started_again_until_it_ends_on_its_own() -> None:
    calls = 0

    async def flaky() -> None:
        nonlocal calls
        calls += 1
        if calls <= 2:
            raise RuntimeError(f"crash {calls}")

    await asyncio.wait_for(keep_running("flaky", flaky, QUICK), 10)
    assert calls == 3


async def test_a_service_that_keeps_crashing_is_given_up_on_naming_it_and_its_last_error() -> None:
    calls = 0

    async def broken() -> None:
        nonlocal calls
        calls += 1
        raise OSError(f"disk full ({calls})")

    with pytest.raises(
        GaveUp, match=r"the indexer service crashed 3 times within 60 s \(last: OSError: disk full \(3\)\)"
    ):
        await asyncio.wait_for(keep_running("indexer", broken, QUICK), 10)
    assert calls == 3


async def test_cancelling_a_kept_service_stops_it_and_is_no_crash() -> None:
    started = asyncio.Event()

    async def forever() -> None:
        started.set()
        await asyncio.Event().wait()

    task = asyncio.create_task(keep_running("forever", forever, QUICK))
    await asyncio.wait_for(started.wait(), 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def test_up_gives_up_loudly_when_its_server_keeps_crashing(tmp_path: Path) -> None:
    running = start_up(
        tmp_path,
        MAHAVISHNU_SERVER__GIVE_UP_AFTER="2",
        MAHAVISHNU_SERVER__GIVE_UP_WINDOW="10m",
        MAHAVISHNU_SERVER__RESTART_BACKOFF="0.1s",
    )
    try:
        first = wait_until(lambda: server_pid(running), timeout=10, what="the nats-server child")
        os.kill(first, signal.SIGKILL)
        second = wait_until(lambda: (pid := server_pid(running)) and pid != first and pid, timeout=30, what="a restart")
        os.kill(second, signal.SIGKILL)
        running.process.communicate(timeout=60)  # up ends by itself
    finally:
        stop_up(running)
    assert running.process.returncode == 1
    last = running.log().strip().splitlines()[-1]
    assert last.startswith("error: nats-server crashed 2 times within 600 s"), last
