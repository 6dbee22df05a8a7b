"""Index one commit of a repository into the event stream: FileIndexed, SecretFound, FileRemoved, CommitIndexed.

    indexer = Indexer(store, mode="redact", hash_key=code_hash_key(home), max_file_size=1 << 20, workers=2)
    done = await indexer.index("api", Path("/srv/api"), commit, previous=last_indexed)
    await indexer.close()

The work is split so that the event loop never waits on it: the change set and the blob
contents come from libgit2 in a thread (`asyncio.to_thread`), a chunk of files at a time;
the analysis (secret scan, symbols, snippets) runs in a process pool, a chunk per task; the
loop only moves chunks along and appends events. Reading, analysing and appending overlap:
while one batch of events is being appended, the pool works on the next chunks.

CommitIndexed is appended last, after the server acknowledged every file event of the
commit: a reader that sees it can trust the commit's files are all in the stream.
"""

from __future__ import annotations

import asyncio
import logging
import math
import multiprocessing
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Final

import pygit2

from core.config import CodeSettings
from core.errors import AppendFailed
from core.events import CommitIndexed, Event, FileIndexed, FileRemoved, SecretFound
from core.events.code import FileAnalysis
from core.store import EventStore
from core.store.bulk import HEADER_ROOM
from projections.codeindex import gitread
from projections.codeindex.analyse import Mode
from projections.codeindex.errors import IndexingFailed
from projections.codeindex.gitread import BlobEntry, ChangeSet
from projections.codeindex.worker import AnalysisJob, WorkFile, analyse_job, lower_priority, ready

__all__ = ["Indexer", "file_events"]

log = logging.getLogger(__name__)

# A chunk is one pool task: large enough to amortise pickling and queue round trips, small
# enough that a commit of a few files still spreads over every worker.
CHUNK_MAX_FILES: Final = 32
CHUNK_MAX_BYTES: Final = 512 * 1024
CHUNKS_PER_WORKER: Final = 4  # a small change set is cut into about this many chunks per worker
# Events per bulk append, and about how many bytes of file content behind them: encoding a
# batch happens on the loop, so a batch must stay a few milliseconds of work.
APPEND_MAX_EVENTS: Final = 1000
APPEND_MAX_BYTES: Final = 2 * 1024 * 1024
# Room for what varies between the event a worker measures and the one sent (event id,
# timestamp precision, correlation id), on top of the frame's headers.
ENVELOPE_SLACK: Final = 256
DEFAULT_MAX_PAYLOAD: Final = 1024 * 1024


class Indexer:
    """Indexes commits of git repositories into events, analysing files in a process pool.

    `mode` "block" refuses to index files with a high-severity secret (their findings are
    still recorded); "redact" indexes them with secrets replaced. `hash_key` keys the hashes
    of secret values (`keys.code_hash_key`). Files over `max_file_size` bytes are recorded as
    skipped without being read. `workers` processes analyse files.
    """

    def __init__(self, store: EventStore, *, mode: Mode, hash_key: bytes, max_file_size: int, workers: int) -> None:
        if mode not in ("redact", "block"):
            raise ValueError(f"mode must be 'redact' or 'block', not {mode!r}")
        if not hash_key:
            raise ValueError("the hash key for secret findings is empty: pass the index's secret key")
        if workers < 1:
            raise ValueError(f"workers must be 1 or more, not {workers}")
        if max_file_size < 0:
            raise ValueError(f"max_file_size must be 0 or more, not {max_file_size}")
        self.store = store
        self.mode: Mode = mode
        self.max_file_size = max_file_size
        self.workers = workers
        self._hash_key = hash_key
        self._pool: ProcessPoolExecutor | None = None
        self._starting: asyncio.Lock | None = None

    @classmethod
    def from_settings(cls, store: EventStore, code: CodeSettings, *, hash_key: bytes) -> Indexer:
        """An indexer as `[code]` configures it: mode, max_file_size, index_workers."""
        return cls(
            store, mode=code.mode, hash_key=hash_key, max_file_size=code.max_file_size, workers=code.index_workers
        )

    def __repr__(self) -> str:  # the default would not show the key, but say so explicitly
        return f"Indexer(mode={self.mode!r}, max_file_size={self.max_file_size}, workers={self.workers})"

    async def start(self) -> None:
        """Start the worker processes (idempotent; `index` calls it too).

        Starting a pool's first process waits for the fork server to import the analysis
        modules, about a second: done in a thread, so the loop carries on meanwhile.
        """
        if self._starting is None:
            self._starting = asyncio.Lock()
        async with self._starting:
            if self._pool is None:
                self._pool = await asyncio.to_thread(_start_pool, self.workers)

    async def close(self) -> None:
        """Shut the pool down, waiting for its processes to exit (in a thread)."""
        pool, self._pool = self._pool, None
        if pool is not None:
            await asyncio.to_thread(pool.shutdown, wait=True, cancel_futures=True)

    async def __aenter__(self) -> Indexer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def index(
        self, repo: str, git_dir: Path, commit: str, previous: str = "", *, correlation_id: str | None = None
    ) -> CommitIndexed:
        """Index `commit` of the repository at `git_dir` (a working tree or a bare mirror) as `repo`.

        With `previous` (the last commit indexed), only the files changed since are indexed
        and the deleted ones removed; without it, or when `previous` is unknown to the
        repository or not an ancestor of `commit` (rewritten history), every file is. Every
        event of the run shares `correlation_id` (a fresh one by default). Returns the
        CommitIndexed event, appended after every file event was acknowledged.

        Raises RepositoryError when the repository or commit cannot be read, AppendFailed
        (a StoreError) when the store does not take the events, IndexingFailed when a worker
        process died (the pool is replaced at the next call); a retry indexes again.
        """
        try:
            return await self._index(repo, git_dir, commit, previous, correlation_id)
        except BrokenProcessPool as exc:
            # A worker died (killed, out of memory): this pool takes no more work. Drop it so
            # the next call starts a fresh one, and say what happened in our own terms. No
            # cancel_futures here: the broken pool fails its pending work itself.
            pool, self._pool = self._pool, None
            if pool is not None:
                await asyncio.to_thread(pool.shutdown, wait=True)
            raise IndexingFailed(
                f"indexing {repo} at {commit} failed: an analysis worker process died ({exc}); "
                "index the commit again (a new pool is started)"
            ) from exc

    async def _index(
        self, repo: str, git_dir: Path, commit: str, previous: str, correlation_id: str | None
    ) -> CommitIndexed:
        started = time.monotonic()
        await self.start()
        correlation = correlation_id or uuid.uuid4().hex
        repository = await asyncio.to_thread(gitread.open_repository, git_dir)
        changes = await asyncio.to_thread(gitread.change_set, repository, commit, previous)
        if changes.full_reason:
            log.info("full index of %s at %s: %s", repo, commit, changes.full_reason)
        for skipped in changes.skipped:
            log.debug("not indexed in %s: %s: %s", repo, skipped.path, skipped.reason)
        batch: list[Event] = []
        weight = 0
        async for entries, analyses in self._analysed(repository, repo, changes):
            for entry, analysis in zip(entries, analyses, strict=True):
                batch.extend(file_events(repo, commit, analysis, correlation_id=correlation))
                weight += min(entry.size, self.max_file_size)
            if len(batch) >= APPEND_MAX_EVENTS or weight >= APPEND_MAX_BYTES:
                await self._append(batch)
                batch, weight = [], 0
        batch.extend(
            FileRemoved(repo=repo, commit=commit, path=path, correlation_id=correlation) for path in changes.removed
        )
        await self._append(batch)
        done = CommitIndexed(
            repo=repo,
            commit=commit,
            previous=changes.previous,
            files_changed=len(changes.to_index),
            files_removed=len(changes.removed),
            seconds=round(time.monotonic() - started, 3),
            mode=self.mode,
            correlation_id=correlation,
        )
        await self.store.append(done)
        return done

    async def _append(self, events: Sequence[Event]) -> None:
        if not events:
            return
        report = await self.store.append_many(events)
        if report.acknowledged != len(events):
            raise AppendFailed(f"the server acknowledged {report.acknowledged} of {len(events)} code-index events")

    async def _analysed(
        self, repository: pygit2.Repository, repo: str, changes: ChangeSet
    ) -> AsyncIterator[tuple[tuple[BlobEntry, ...], list[FileAnalysis]]]:
        """Each chunk of files with its analyses, in order, with up to two chunks per worker in flight."""
        pool = self._pool
        if pool is None:
            raise RuntimeError("the indexer is closed")
        loop = asyncio.get_running_loop()
        budget = _max_payload(self.store) - HEADER_ROOM - ENVELOPE_SLACK
        per_chunk = max(1, min(CHUNK_MAX_FILES, math.ceil(len(changes.to_index) / (self.workers * CHUNKS_PER_WORKER))))
        in_flight: deque[tuple[tuple[BlobEntry, ...], asyncio.Future[list[FileAnalysis]]]] = deque()
        try:
            for chunk in gitread.chunked(changes.to_index, max_files=per_chunk, max_bytes=CHUNK_MAX_BYTES):
                files = await asyncio.to_thread(self._read, repository, chunk)
                job = AnalysisJob(
                    repo=repo,
                    commit=changes.commit,
                    files=files,
                    mode=self.mode,
                    max_file_size=self.max_file_size,
                    max_event_bytes=budget,
                    hash_key=self._hash_key,
                )
                in_flight.append((chunk, loop.run_in_executor(pool, analyse_job, job)))
                while len(in_flight) >= 2 * self.workers:
                    entries, future = in_flight.popleft()
                    yield entries, await future
            while in_flight:
                entries, future = in_flight.popleft()
                yield entries, await future
        except BrokenProcessPool:
            # The broken pool fails every pending task itself; cancelling them too races with
            # it (CPython 3.11's manager thread then dies of InvalidStateError). Only collect
            # their errors, so that none is reported as never retrieved.
            for _, future in in_flight:
                future.add_done_callback(_retrieve)
            in_flight.clear()
            raise
        finally:
            for _, future in in_flight:  # an error or a cancellation: drop the work not yet started
                future.cancel()

    def _read(self, repository: pygit2.Repository, chunk: Sequence[BlobEntry]) -> tuple[WorkFile, ...]:
        """The chunk's contents (in a thread); a file over the size limit is not read at all."""
        readable = [entry for entry in chunk if entry.size <= self.max_file_size]
        contents = iter(gitread.read_blobs(repository, readable))
        return tuple(
            (entry.path, next(contents) if entry.size <= self.max_file_size else None, entry.size) for entry in chunk
        )


def file_events(repo: str, commit: str, analysis: FileAnalysis, *, correlation_id: str | None = None) -> list[Event]:
    """A file's FileIndexed event and a SecretFound event per finding (pure).

    A finding is `blocked` when block mode refused the file because of it: the file was
    skipped as "blocked-secret" and the finding is of high severity.
    """
    events: list[Event] = [FileIndexed(repo=repo, commit=commit, analysis=analysis, correlation_id=correlation_id)]
    blocked = analysis.skipped == "blocked-secret"
    events.extend(
        SecretFound(
            repo=repo,
            commit=commit,
            path=analysis.path,
            finding=finding,
            blocked=blocked and finding.severity == "high",
            correlation_id=correlation_id,
        )
        for finding in analysis.findings
    )
    return events


def _retrieve(future: asyncio.Future[list[FileAnalysis]]) -> None:
    if not future.cancelled():
        future.exception()


def _max_payload(store: EventStore) -> int:
    return int(store.nc.max_payload or DEFAULT_MAX_PAYLOAD)


def _start_pool(workers: int) -> ProcessPoolExecutor:
    """A process pool whose workers have the analysis modules imported already (blocking: run in a thread).

    forkserver (spawn where there is none): never fork the calling process itself, which
    runs an event loop, threads and TLS connections that a forked child must not inherit.
    The fork server imports the worker module once; each worker is a fork of it.
    """
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
    if context.get_start_method() == "forkserver":
        context.set_forkserver_preload(["projections.codeindex.worker"])
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=lower_priority)
    # Each submission while no worker is idle starts one more process: all of them now.
    started: list[Future[int]] = [pool.submit(ready) for _ in range(workers)]
    for future in started:
        future.result()
    return pool
