"""Fixtures shared by every test folder: a real mesh per module, a connection and a store per test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from nats.aio.client import Client

from core.store import EventStore, connect
from tests.harness import Mesh, start_mesh


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    running = start_mesh(tmp_path_factory.mktemp("mesh"))
    yield running
    running.stop()


@pytest.fixture
async def nc(mesh: Mesh) -> AsyncIterator[Client]:
    client = await connect(mesh.identity, name="tests", reconnect=False)
    yield client
    await client.close()


@pytest.fixture
async def store(nc: Client) -> EventStore:
    event_store = EventStore(nc)
    await event_store.ensure_streams()
    return event_store
