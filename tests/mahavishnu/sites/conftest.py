"""The site tests' fixtures: a hub with a leaf listener, and its control connection keeping the sources attached."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from core.store import EventStore, connect
from mahavishnu.sites import hub as sites
from tests.harness import Mesh, start_mesh


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[Mesh]:
    running = start_mesh(tmp_path / "hub", leaf_port=-1)
    yield running
    running.stop()


@pytest.fixture
async def control(hub: Mesh) -> AsyncIterator[EventStore]:
    """The hub's control connection, keeping the sites' sources attached as `up` does."""
    store = EventStore(await connect(hub.identity, name="tests-hub"))
    await store.ensure_streams()
    stop = asyncio.Event()
    keeping = asyncio.create_task(sites.keep_sources(store.nc, hub.home, stop))
    yield store
    stop.set()
    await keeping
    await store.nc.close()
