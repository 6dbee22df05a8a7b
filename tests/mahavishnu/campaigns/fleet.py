"""Simulated devices and campaigns for the orchestrator's tests: real agents (with simulate.work) on a real mesh."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
from prometheus_client import CollectorRegistry

from core import subjects
from core.campaigns import ids
from core.campaigns.spec import CampaignSpec
from core.campaigns.state import CampaignView, fold
from core.events import CampaignCreated, CampaignEvent, Event
from core.store import EventStore, connect
from edge import load_agent_config
from edge.agent import Agent
from edge.simulate import fails, simulated_registry
from mahavishnu.campaigns.metrics import OrchestratorMetrics
from mahavishnu.campaigns.orchestrator import Orchestrator
from mahavishnu.control import devices
from tests.harness import Mesh


def device_ids(count: int, *, failing: int, fail_pct: float, prefix: str = "sim") -> list[str]:
    """`count` fresh device ids of which exactly `failing`, spread evenly, fail simulate.work at `fail_pct`
    (edge.simulate.fails)."""
    good: list[str] = []
    bad: list[str] = []
    while len(good) < count - failing or len(bad) < failing:
        device = f"{prefix}-{uuid.uuid4().hex[:8]}"
        (bad if fails(device, fail_pct) else good).append(device)
    ordered = good[: count - failing]
    for index, device in enumerate(bad[:failing]):  # spread over the list, as failures are over a fleet
        ordered.insert(min(len(ordered), (index + 1) * count // (failing + 1)), device)
    return ordered


@dataclass
class Fleet:
    """Agents running in this process, each with its own connection and ledger."""

    stop: asyncio.Event = field(default_factory=asyncio.Event)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def halt(self) -> None:
        self.stop.set()
        await asyncio.wait_for(asyncio.gather(*self.tasks, return_exceptions=True), 30)


@contextlib.asynccontextmanager
async def fleet(mesh: Mesh, store: EventStore, folder: Path, device_ids: Iterable[str]) -> AsyncIterator[Fleet]:
    """Enrol the devices and run a simulated agent for each until the block ends."""
    running = Fleet()
    try:
        for device in device_ids:
            result = await devices.enroll(
                mesh.home, mesh.settings, store, device, out_dir=folder / device, url=mesh.identity.url
            )
            config = load_agent_config(result.agent_config)
            agent = Agent(config, registry=simulated_registry())
            running.tasks.append(asyncio.create_task(agent.run(running.stop)))
        yield running
    finally:
        await running.halt()


@contextlib.asynccontextmanager
async def orchestrator(mesh: Mesh, *, registry: CollectorRegistry | None = None) -> AsyncIterator[Orchestrator]:
    """The orchestrator on a connection of its own, as `up` runs it, until the block ends."""
    nc = await connect(mesh.identity, name="tests-campaigns")
    stop = asyncio.Event()
    service = Orchestrator(EventStore(nc), metrics=OrchestratorMetrics(registry) if registry is not None else None)
    task = asyncio.create_task(service.run(stop))
    try:
        await asyncio.wait_for(service.ready.wait(), 30)
        yield service
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
        await nc.close()


def spec(data: dict[str, Any]) -> CampaignSpec:
    return msgspec.convert(data, CampaignSpec)


async def create(store: EventStore, campaign: CampaignSpec) -> str:
    """What `campaign create` appends (its control module audits it too; the orchestrator needs the event only)."""
    campaign_id = ids.new_campaign_id()
    await store.append(CampaignCreated(campaign_id=campaign_id, spec=campaign, actor="tester"))
    return campaign_id


async def history(store: EventStore, campaign_id: str) -> list[tuple[int, Event]]:
    """The campaign's events with their stream sequences, in order."""
    return [
        (stored.seq, stored.event)
        async for stored in store.read(subjects.campaign_events(campaign_id))
        if isinstance(stored.event, CampaignEvent)
    ]


async def view_of(store: EventStore, campaign_id: str) -> CampaignView:
    view = fold([event for _, event in await history(store, campaign_id)])
    assert view is not None
    return view
