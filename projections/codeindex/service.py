"""The code index while the mesh runs: the poller finds new commits, the indexer turns them into events.

`mahavishnu up` runs one CodeIndexService; the code read model itself is a projection like
the others (projections.codeindex.readmodel, in the catalog). On start the poller reads
the repositories' events, so a commit seen but not indexed before a restart is indexed
again at its first poll: the stream says where every repository stands.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from core.config import CodeSettings
from core.metrics import CodeIndexMetrics
from core.store import EventStore
from projections.codeindex.indexer import Indexer
from projections.codeindex.keys import code_hash_key
from projections.codeindex.poller import Poller


class CodeIndexService:
    def __init__(
        self, store: EventStore, home_root: Path, settings: CodeSettings, *, metrics: CodeIndexMetrics | None = None
    ) -> None:
        self.metrics = metrics
        self.indexer = Indexer.from_settings(store, settings, hash_key=code_hash_key(home_root))
        self.poller = Poller(store, home_root / "mirrors", settings, self._index, metrics=metrics)

    async def start(self) -> None:
        """Start the indexer's worker pool now rather than at the first commit (it costs about 0.4 s)."""
        await self.indexer.start()

    async def run(self, stop: asyncio.Event) -> None:
        await self.poller.run(stop)

    async def close(self) -> None:
        await self.indexer.close()

    async def _index(self, repo: str, git_dir: Path, commit: str, previous: str) -> None:
        started = time.monotonic()
        indexed = await self.indexer.index(repo, git_dir, commit, previous)
        if self.metrics is not None:
            mode = "incremental" if indexed.previous else "full"
            self.metrics.index_seconds.labels(mode=mode).observe(time.monotonic() - started)
