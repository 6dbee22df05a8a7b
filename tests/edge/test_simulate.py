"""simulate.work: a deterministic share of devices fails; only simulated agents have it."""

from __future__ import annotations

from typing import Any

import pytest

from edge.builtin import default_registry
from edge.errors import CommandError, InvalidArguments
from edge.handlers import HandlerContext
from edge.simulate import SimulateWork, fails, simulated_registry


def test_the_failing_share_is_about_the_percentage_asked_and_the_same_every_time() -> None:
    devices = [f"sim-{i}" for i in range(2000)]
    failing = [d for d in devices if fails(d, 15)]
    assert 0.12 < len(failing) / len(devices) < 0.18
    assert failing == [d for d in devices if fails(d, 15)]
    assert not any(fails(d, 0) for d in devices) and all(fails(d, 100) for d in devices)


async def test_it_fails_on_a_failing_device_and_succeeds_on_the_others(context: HandlerContext) -> None:
    work = SimulateWork()
    failing = next(d for d in (f"dev-{i}" for i in range(100)) if fails(d, 50))
    passing = next(d for d in (f"dev-{i}" for i in range(100)) if not fails(d, 50))
    assert await work.run({"fail_pct": 50}, HandlerContext(device_id=passing, config=context.config)) == {"worked": 0}
    with pytest.raises(CommandError, match="simulated failure"):
        await work.run({"fail_pct": 50}, HandlerContext(device_id=failing, config=context.config))


@pytest.mark.parametrize("args", [{"fail_pct": 101}, {"fail_pct": "5"}, {"seconds": -1}, {"other": 1}])
def test_bad_arguments_are_refused(args: dict[str, Any]) -> None:
    with pytest.raises(InvalidArguments, match=r"simulate\.work"):
        SimulateWork().validate(args)


def test_only_simulated_agents_have_it() -> None:
    assert "simulate.work" not in default_registry().names()
    assert "simulate.work" in simulated_registry().names()
