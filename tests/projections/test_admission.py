"""Admission: a fair share of the running slots per caller, bounded lines, immediate refusals."""

from __future__ import annotations

import asyncio

import pytest

from projections.admission import Admission, Refused
from tests.waiting import eventually


async def hold(admission: Admission, caller: str, log: list[str], release: asyncio.Event) -> None:
    async with admission.slot(caller):
        log.append(caller)
        await release.wait()


async def waiting(admission: Admission, count: int) -> None:
    await eventually(lambda: admission.waiting == count, timeout=5, what=f"{count} queries waiting")


async def test_freed_slots_go_to_the_callers_in_turn_not_to_the_longest_line() -> None:
    admission = Admission(slots=1, per_caller=10, total=100)
    order: list[str] = []
    gates = [asyncio.Event() for _ in range(7)]
    tasks = [asyncio.create_task(hold(admission, "flood", order, gates[0]))]
    await eventually(lambda: order == ["flood"], timeout=5, what="the first query running")
    tasks += [asyncio.create_task(hold(admission, "flood", order, gates[i])) for i in range(1, 5)]
    await waiting(admission, 4)
    tasks += [asyncio.create_task(hold(admission, "quiet", order, gates[5]))]
    tasks += [asyncio.create_task(hold(admission, "third", order, gates[6]))]
    await waiting(admission, 6)
    assert order == ["flood"]
    for gate in gates:  # release them all; each freed slot goes to the next caller in turn
        gate.set()
    await asyncio.gather(*tasks)
    assert order == ["flood", "flood", "quiet", "third", "flood", "flood", "flood"]
    assert admission.waiting == 0


async def test_a_caller_with_a_full_line_is_told_to_slow_down_and_others_still_get_in() -> None:
    admission = Admission(slots=1, per_caller=2, total=100)
    release = asyncio.Event()
    log: list[str] = []
    held = [asyncio.create_task(hold(admission, "flood", log, release)) for _ in range(3)]  # one runs, two wait
    await waiting(admission, 2)
    with pytest.raises(Refused, match="flood has 2 queries waiting already") as refused:
        await hold(admission, "flood", log, release)
    assert refused.value.status == 429
    other = asyncio.create_task(hold(admission, "quiet", log, release))
    await waiting(admission, 3)
    release.set()
    await asyncio.gather(*held, other)
    assert log.index("quiet") < len(log) - 1  # not behind the whole flood


async def test_when_everyone_waits_anyone_more_is_refused_503() -> None:
    admission = Admission(slots=1, per_caller=10, total=2)
    release = asyncio.Event()
    held = [asyncio.create_task(hold(admission, f"c{i}", [], release)) for i in range(3)]
    await waiting(admission, 2)
    with pytest.raises(Refused, match="2 queries waiting") as refused:
        await hold(admission, "late", [], release)
    assert refused.value.status == 503
    release.set()
    await asyncio.gather(*held)


async def test_a_waiter_that_gives_up_leaves_its_place_and_no_slot_is_lost() -> None:
    admission = Admission(slots=1, per_caller=10, total=10)
    release = asyncio.Event()
    running: list[str] = []
    first = asyncio.create_task(hold(admission, "a", running, release))
    await eventually(lambda: running == ["a"], timeout=5, what="the first query running")
    quitter = asyncio.create_task(hold(admission, "b", [], release))
    await waiting(admission, 1)
    quitter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await quitter
    assert admission.waiting == 0
    release.set()
    await first
    async with asyncio.timeout(5):  # the slot came back: the next caller gets in at once
        async with admission.slot("c"):
            pass
