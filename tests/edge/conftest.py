"""Fixtures of the edge tests: a real state file per test and a handler context over it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.handlers import HandlerContext
from edge.state import AgentState
from tests.edge.samples import DEVICE


@pytest.fixture
def state(tmp_path: Path) -> Iterator[AgentState]:
    with AgentState(tmp_path / "agent-state.lmdb") as opened:
        yield opened


@pytest.fixture
def context(state: AgentState) -> HandlerContext:
    return HandlerContext(device_id=DEVICE, config=state)
