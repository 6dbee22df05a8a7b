"""On a mesh whose artifacts bucket was never made (no `up` since the update), a step says so in one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.errors import StoreUnavailable
from core.store import EventStore
from mahavishnu.updates import artifacts


async def test_add_without_the_bucket_says_what_to_do(store: EventStore, tmp_path: Path) -> None:
    path = tmp_path / "app.bin"
    path.write_bytes(b"bytes")
    with pytest.raises(StoreUnavailable, match=r"no stream answered.*`mahavishnu up`") as failed:
        await artifacts.add(store, path, name="app", version="1", device_type="x", actor="o")
    assert "\n" not in str(failed.value)
    assert await artifacts.artifacts(store) == {}  # nothing recorded
