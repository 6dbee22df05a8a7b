"""Campaigns under `mahavishnu up`: its orchestrator runs them on simulated agents (`agent run --simulate`),
targets by a filter over the devices read model, and a continuous campaign reaches a device that matches later."""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator, Awaitable, Iterator
from pathlib import Path

import pytest

from core.config import load_config
from core.store import EventStore, connect
from mahavishnu.runtime.home import Home
from tests.mahavishnu.campaigns.fleet import view_of
from tests.mahavishnu.cli_harness import MAHAVISHNU, Running, run, scrape_metrics, start_up, stop_up
from tests.waiting import eventually_async, wait_until

CONTINUOUS = """
name = "pumps"
[document.command]
name = "simulate.work"
args = { seconds = 0.1 }
[targets]
tags = { role = "pump" }
mode = "continuous"
"""


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    running = start_up(tmp_path_factory.mktemp("campaigns-up"))
    yield running
    stop_up(running)


@pytest.fixture
async def store(up: Running) -> AsyncIterator[EventStore]:
    nc = await connect(Home(up.home).control_identity(load_config(None, env=up.env)), name="tests", reconnect=False)
    try:
        yield EventStore(nc)
    finally:
        await nc.close()


@pytest.fixture
def simulated(up: Running) -> Iterator[None]:
    """Three simulated agents (sim-0..sim-2, with simulate.work), enrolled and running."""
    agents = subprocess.Popen([MAHAVISHNU, "agent", "run", "--simulate", "3"], env=up.env, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: (up.home / "devices" / "sim-2" / "agent.toml").is_file(), timeout=60, what="the enrolments")
        yield
    finally:
        agents.terminate()
        agents.wait(timeout=30)


async def _is(found: Awaitable[str], wanted: str) -> bool:
    return await found == wanted


def _tag(up: Running, device: str, tag: str) -> None:
    tagged = run("device", "tag", device, tag, env=up.env)
    assert tagged.returncode == 0, tagged.stderr


async def test_a_continuous_campaign_reaches_the_devices_that_match_it_later(
    up: Running, store: EventStore, tmp_path: Path, simulated: None
) -> None:
    _tag(up, "sim-0", "role=pump")
    _tag(up, "sim-1", "role=pump")
    file = tmp_path / "pumps.toml"
    file.write_text(CONTINUOUS)

    def created() -> str:
        made = run("campaign", "create", str(file), env=up.env)
        return made.stdout.strip() if made.returncode == 0 else ""

    # the devices read model sees the tags a moment after they are recorded
    campaign = wait_until(created, timeout=30, what="the campaign to be created", interval=0.5)

    async def succeeded(devices: set[str]) -> bool:
        view = await view_of(store, campaign)
        done = {d for d, e in view.executions.items() if e.state == "succeeded"}
        return done == devices

    await eventually_async(lambda: succeeded({"sim-0", "sim-1"}), timeout=60, what="the first two pumps")
    _tag(up, "sim-2", "role=pump")
    await eventually_async(lambda: succeeded({"sim-0", "sim-1", "sim-2"}), timeout=60, what="the later pump")
    assert (await view_of(store, campaign)).status == "running"  # continuous: until canceled or its end
    # A device that stops matching is removed: here an offline one, whose command waits untaken.
    enrolled = run("device", "enroll", "pump-offline", env=up.env)
    assert enrolled.returncode == 0, enrolled.stderr
    _tag(up, "pump-offline", "role=pump")

    async def state_of(device: str) -> str:
        execution = (await view_of(store, campaign)).executions.get(device)
        return execution.state if execution is not None else ""

    await eventually_async(
        lambda: _is(state_of("pump-offline"), "queued"), timeout=60, what="the offline pump notified"
    )
    untagged = run("device", "tag", "pump-offline", "--remove", "role", env=up.env)
    assert untagged.returncode == 0, untagged.stderr
    await eventually_async(
        lambda: _is(state_of("pump-offline"), "removed"), timeout=60, what="the untagged pump removed"
    )
    assert (await view_of(store, campaign)).executions["sim-0"].state == "succeeded"  # the others stay
    canceled = run("campaign", "cancel", campaign, env=up.env)
    assert canceled.returncode == 0, canceled.stderr
    assert "mahavishnu_campaign_foreign_reports_total" in scrape_metrics(up)
