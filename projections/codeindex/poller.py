"""Polls every registered repository for a new head commit, and hands new commits to the indexer.

No thundering herd: each repository polls once per interval at an offset of its own (a
hash of its name spreads them over the interval) plus a little random jitter, and never
more than `max_concurrent_polls` polls run at once. A remote host that keeps failing gets
its circuit opened (projections.codeindex.breaker), so its repositories stop being
hammered until a trial poll after the cooldown. Indexing a new commit runs outside the
poll slots (it has its own process pool), one commit at a time per repository.

Every outcome is an event: RepoCommitSeen, RepoPollFailed (with a reason, never a
credential), CircuitChanged; and metrics (polls by outcome, circuit state per host).
pygit2 blocks, so opening, cloning and fetching run in threads. A thread cannot be
cancelled, so a silent remote is bounded by libgit2's own transport timeouts rather than
by abandoning the thread: a poll's slot is held until its git work has really ended.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pygit2

from core.config import CodeSettings
from core.errors import MahavishnuError
from core.events import CircuitChanged, RepoCommitSeen, RepoPollFailed
from core.events.repo import CircuitState
from core.metrics import CodeIndexMetrics
from core.store import EventStore
from projections.codeindex.breaker import Breaker
from projections.codeindex.errors import CodeIndexError
from projections.codeindex.gitread import open_repository, resolve_head
from projections.codeindex.remote_auth import FetchCredentials
from projections.codeindex.repos import Registry, RegistryFollower, Repository

log = logging.getLogger("mahavishnu.poller")

OnCommit = Callable[[str, Path, str, str], Awaitable[None]]  # (repo, git dir, commit, previous indexed commit)


class PollFailed(CodeIndexError):
    """One poll of one repository failed; the message is the reason recorded in RepoPollFailed."""


def poll_offset(name: str, interval: float) -> float:
    """Where in each interval a repository polls (pure, stable across restarts): spreads them evenly."""
    fraction = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big") / 2**64
    return fraction * interval


def bound_transport(timeout: float) -> None:
    """Make libgit2 give up on a remote that does not connect or answer within `timeout` seconds.

    Process-wide (libgit2 has no per-fetch setting): the poller is the only code that talks
    to remotes. It bounds every connect, read and write, so a fetch thread always ends.
    """
    pygit2.settings.server_connect_timeout = max(1, int(timeout * 1000))
    pygit2.settings.server_timeout = max(1, int(timeout * 1000))


def head_of(repo: Repository, mirrors: Path) -> tuple[Path, str]:
    """The git directory and head commit of `repo`, fetching a remote into its mirror first (blocking)."""
    if not repo.remote:
        git_dir = Path(repo.location)
        opened = open_repository(git_dir)
    else:
        git_dir = mirrors / f"{repo.name}.git"
        opened = _fetched_mirror(repo.location, git_dir)
    return git_dir, resolve_head(opened, repo.branch)  # RepositoryError names an unknown branch


def _fetched_mirror(url: str, git_dir: Path) -> pygit2.Repository:
    try:
        if (git_dir / "HEAD").exists():
            mirror = pygit2.Repository(str(git_dir))
        else:
            git_dir.parent.mkdir(parents=True, exist_ok=True)
            mirror = pygit2.init_repository(str(git_dir), bare=True)
        # Checked at every fetch, not only at the first: a first clone that failed leaves a mirror
        # behind, and a repository removed and added again under its name may have a new URL.
        if "origin" not in mirror.remotes.names():
            # A mirror refspec: a fetch moves refs/heads/* themselves, so branches follow the remote.
            mirror.remotes.create("origin", url, "+refs/*:refs/*")
        elif mirror.remotes["origin"].url != url:
            mirror.remotes.set_url("origin", url)
        remote = mirror.remotes["origin"]
        remote.fetch(prune=pygit2.enums.FetchPrune.PRUNE, callbacks=FetchCredentials())
        for head in remote.list_heads(connect=False):  # HEAD follows the remote's default branch, even if it moves
            if head.name == "HEAD" and head.symref_target:
                mirror.set_head(head.symref_target)
        return mirror
    except pygit2.GitError as exc:
        raise PollFailed(_remote_reason(url, str(exc))) from None


def _remote_reason(url: str, error: str) -> str:
    lowered = error.lower()
    if "auth" in lowered or "credential" in lowered or "401" in lowered or "403" in lowered:
        return f"{url} asks for credentials: give the poller an SSH key or agent, or a git credential helper"
    if "refused" in lowered or "resolve" in lowered or "timed out" in lowered or "unreachable" in lowered:
        return f"{url} is unreachable ({error.strip()})"
    return f"fetching {url} failed ({error.strip()})"


class Poller:
    def __init__(
        self,
        store: EventStore,
        mirrors: Path,
        settings: CodeSettings,
        on_commit: OnCommit,
        *,
        metrics: CodeIndexMetrics | None = None,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        fetch_timeout: float = 60.0,
    ) -> None:
        """`fetch_timeout`: seconds a remote may take to connect or to answer before its poll fails."""
        self.store = store
        self.mirrors = mirrors
        self.settings = settings
        self.on_commit = on_commit
        self.metrics = metrics
        self.clock = clock
        self.rng = rng or random.Random()
        self.fetch_timeout = fetch_timeout
        bound_transport(fetch_timeout)
        self.follower = RegistryFollower(store)
        self.breakers: dict[str, Breaker] = {}
        self.polls = self.failures = self.in_flight = self.max_in_flight = 0
        self._slots = asyncio.Semaphore(settings.max_concurrent_polls)
        self._base: dict[str, float] = {}  # the start of each repository's current interval slot
        self._due: dict[str, float] = {}
        self._polling: dict[str, asyncio.Task[str | None]] = {}
        self._indexing: dict[str, asyncio.Task[None]] = {}
        self._handed: dict[str, tuple[str, str]] = {}  # (registration, head) last handed to the indexer
        self._waiting_since: dict[str, float] = {}  # repositories whose newest commit is not indexed yet
        self._lag_exported: set[str] = set()  # repositories with an index lag gauge

    # --- scheduling ------------------------------------------------------------------

    def schedule(self, registry: Registry, now: float) -> list[str]:
        """Bring the schedule in line with the registry; return the repositories due now, and plan their next poll."""
        interval = self.settings.poll_interval
        for name in list(self._due):
            if name not in registry.repos:
                del self._due[name], self._base[name]
                self._handed.pop(name, None)
                self._waiting_since.pop(name, None)
        for name in registry.repos:
            if name not in self._due:
                self._base[name] = now - interval + poll_offset(name, interval)  # first slot within one interval
                if self._base[name] + interval <= now:
                    self._base[name] += interval
                self._due[name] = self._base[name] + interval + self._jitter()
                self._base[name] += interval
        due = [name for name, at in self._due.items() if at <= now]
        for name in due:
            while self._base[name] + interval <= now:  # a long pause (a suspended laptop) skips missed slots
                self._base[name] += interval
            self._base[name] += interval
            self._due[name] = self._base[name] + self._jitter()
        return due

    def _jitter(self) -> float:
        return self.rng.uniform(0.0, self.settings.poll_jitter * self.settings.poll_interval)

    def next_due(self) -> float | None:
        return min(self._due.values(), default=None)

    async def run(self, stop: asyncio.Event) -> None:
        """Poll until `stop` is set; then wait for the polls and indexing under way."""
        try:
            while not stop.is_set():
                try:
                    registry = await self.follower.refresh()
                except MahavishnuError as exc:
                    log.error("repositories not read; retrying", extra={"reason": str(exc)})
                    registry = self.follower.registry
                self._export_lag(registry)
                for name in self.schedule(registry, self.clock()):
                    if name not in self._polling:  # one poll of a repository at a time
                        task = asyncio.create_task(self.poll(registry.repos[name]), name=f"poll-{name}")
                        self._polling[name] = task
                        task.add_done_callback(lambda _, n=name: self._polling.pop(n, None))  # type: ignore[misc]
                upcoming = self.next_due()
                wait = 1.0 if upcoming is None else min(max(upcoming - self.clock(), 0.01), 1.0)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), wait)  # at most 1 s: new repositories are noticed soon
        finally:
            await asyncio.gather(*self._polling.values(), *self._indexing.values(), return_exceptions=True)

    # --- one poll --------------------------------------------------------------------

    async def poll(self, repo: Repository) -> str | None:
        """Poll `repo` once: its head, or None when the poll failed or its host's circuit is open."""
        breaker = self._breaker(repo.host) if repo.host else None
        if breaker is not None:
            allowed, moved = breaker.allows(self.clock())
            await self._circuit_moved(repo, moved, "cooldown over: one trial poll")
            if not allowed:
                return None
        async with self._slots:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            self.polls += 1
            try:
                git_dir, head = await asyncio.to_thread(head_of, repo, self.mirrors)
            except (CodeIndexError, OSError) as exc:
                await self._failed(repo, breaker, str(exc))
                return None
            except Exception as exc:  # a bug or a pygit2 surprise: one repository's failure, never the poller's end
                log.exception("poll failed unexpectedly", extra={"repo": repo.name})
                await self._failed(repo, breaker, f"unexpected {type(exc).__name__}: {exc}")
                return None
            finally:
                self.in_flight -= 1
        self._count(repo, "ok")
        if breaker is not None:
            await self._circuit_moved(repo, breaker.succeeded(), "a poll succeeded")
        await self._maybe_index(repo, git_dir, head)
        return head

    async def _maybe_index(self, repo: Repository, git_dir: Path, head: str) -> None:
        handed = self._handed.get(repo.name) == (repo.added, head)
        if head == repo.indexed or handed or repo.name in self._indexing:
            return
        if head != repo.seen:
            await self.store.append(RepoCommitSeen(repo=repo.name, commit=head, previous=repo.indexed, actor="poller"))
        self._handed[repo.name] = (repo.added, head)
        self._waiting_since.setdefault(repo.name, self.clock())
        task = asyncio.create_task(self._index(repo, git_dir, head), name=f"index-{repo.name}")
        self._indexing[repo.name] = task
        task.add_done_callback(lambda _: self._indexing.pop(repo.name, None))

    async def _index(self, repo: Repository, git_dir: Path, head: str) -> None:
        try:
            await self.on_commit(repo.name, git_dir, head, repo.indexed)
            since = self._waiting_since.pop(repo.name, None)
            if since is not None and self.metrics is not None:
                self.metrics.freshness_seconds.observe(self.clock() - since)
        except Exception as exc:  # any failure: recorded, retried at the next poll, never the end of the poller
            log.exception("indexing failed", extra={"repo": repo.name, "commit": head})
            self._handed.pop(repo.name, None)
            with contextlib.suppress(MahavishnuError):
                await self.store.append(
                    RepoPollFailed(repo=repo.name, reason=f"indexing {head[:12]} failed: {exc}", actor="poller")
                )

    async def _failed(self, repo: Repository, breaker: Breaker | None, reason: str) -> None:
        self.failures += 1
        self._count(repo, "failed")
        log.warning("poll failed", extra={"repo": repo.name, "reason": reason})
        with contextlib.suppress(MahavishnuError):
            await self.store.append(RepoPollFailed(repo=repo.name, reason=reason, host=repo.host, actor="poller"))
        if breaker is not None:
            await self._circuit_moved(repo, breaker.failed(self.clock()), reason)

    def _breaker(self, host: str) -> Breaker:
        if host not in self.breakers:
            self.breakers[host] = Breaker(self.settings.breaker_failures, self.settings.breaker_cooldown)
            if self.metrics is not None:  # a host is on the dashboard from its first poll, not its first trouble
                self.metrics.circuit_state.labels(host=host).set(CodeIndexMetrics.CIRCUIT_STATES["closed"])
        return self.breakers[host]

    async def _circuit_moved(self, repo: Repository, state: CircuitState | None, reason: str) -> None:
        if state is None:
            return
        breaker = self.breakers[repo.host]
        log.warning("circuit changed", extra={"host": repo.host, "state": state, "reason": reason})
        if self.metrics is not None:
            self.metrics.circuit_state.labels(host=repo.host).set(CodeIndexMetrics.CIRCUIT_STATES[state])
        with contextlib.suppress(MahavishnuError):
            await self.store.append(
                CircuitChanged(
                    repo=repo.name,
                    host=repo.host,
                    state=state,
                    failures=breaker.consecutive,
                    reason=reason,
                    actor="poller",
                )
            )

    def _export_lag(self, registry: Registry) -> None:
        """Index lag per repository: how long its newest commit has waited to be indexed (0: up to date)."""
        if self.metrics is None:
            return
        now = self.clock()
        for name in self._lag_exported - registry.repos.keys():  # a removed repository has no lag, not its last one
            self.metrics.index_lag_seconds.remove(name)
        self._lag_exported = set(registry.repos)
        for name in registry.repos:
            since = self._waiting_since.get(name)
            self.metrics.index_lag_seconds.labels(repo=name).set(0.0 if since is None else now - since)

    def _count(self, repo: Repository, outcome: str) -> None:
        if self.metrics is not None:
            self.metrics.polls.labels(repo=repo.name, outcome=outcome).inc()
