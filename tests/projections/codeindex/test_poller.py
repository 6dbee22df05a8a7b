"""The poller: spread schedule, bounded concurrency, breakers, events; against real git repositories and NATS."""

from __future__ import annotations

import asyncio
import random
import socket
import uuid
from pathlib import Path

import pygit2
import pytest

from core.config import CodeSettings
from core.events import CircuitChanged, RepoAdded, RepoCommitSeen, RepoPollFailed
from core.store import EventStore
from projections.codeindex.breaker import Breaker
from projections.codeindex.poller import Poller, poll_offset
from projections.codeindex.repos import Registry, Repository, RepositoryRefused, default_name, parse_location
from tests.waiting import eventually


def commit(path: Path, files: dict[str, str], message: str = "change") -> str:
    repo = (
        pygit2.Repository(str(path))
        if (path / ".git").exists()
        else pygit2.init_repository(str(path), initial_head="main")
    )
    for name, text in files.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(text)
        repo.index.add(name)
    repo.index.write()
    tree = repo.index.write_tree()
    who = pygit2.Signature("test", "test@example.com")
    parents = [] if repo.head_is_unborn else [repo.head.target]
    return str(repo.create_commit("HEAD", who, who, message, tree, parents))


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str]] = []

    async def __call__(self, repo: str, git_dir: Path, commit: str, previous: str) -> None:
        self.calls.append((repo, commit, previous))


async def events_of(store: EventStore, repo: str) -> list[object]:
    return [s.event async for s in store.read(f"mesh.evt.repo.{repo}.>")]


def name() -> str:
    return f"r-{uuid.uuid4().hex[:8]}"


def test_offsets_spread_a_hundred_repositories_over_the_interval() -> None:
    offsets = sorted(poll_offset(f"repo-{i}", 30.0) for i in range(100))
    assert offsets == sorted(poll_offset(f"repo-{i}", 30.0) for i in range(100))  # stable
    assert offsets[0] >= 0 and offsets[-1] < 30
    assert max(sum(1 for o in offsets if start <= o < start + 1.0) for start in range(30)) <= 10  # no herd


def test_the_schedule_polls_each_repository_once_per_interval(tmp_path: Path) -> None:
    now = [1000.0]
    settings = CodeSettings(poll_interval=30.0, poll_jitter=0.1)
    poller = Poller(None, tmp_path, settings, Recorder(), clock=lambda: now[0], rng=random.Random(1))  # type: ignore[arg-type]
    registry = Registry({f"repo-{i}": Repository(f"repo-{i}", f"/r/{i}", "", False) for i in range(100)})
    polls: dict[str, int] = {}
    busiest = 0
    for _ in range(int(90 / 0.1)):  # 90 s in steps of 0.1 s
        due = poller.schedule(registry, now[0])
        busiest = max(busiest, len(due))
        for repo in due:
            polls[repo] = polls.get(repo, 0) + 1
        now[0] += 0.1
    assert set(polls.values()) <= {2, 3, 4} and sum(polls.values()) in range(250, 351)
    assert busiest <= 5


def test_the_breaker_opens_half_opens_and_closes() -> None:
    breaker = Breaker(failures=3, cooldown=60.0)
    assert [breaker.failed(t) for t in (0, 1, 2)] == [None, None, "open"]
    assert breaker.allows(30) == (False, None)
    assert breaker.allows(62) == (True, "half-open")
    assert breaker.allows(63) == (False, None)  # one trial at a time
    assert breaker.failed(64) == "open"
    assert breaker.allows(130) == (True, "half-open")
    assert breaker.succeeded() == "closed" and breaker.allows(131) == (True, None)


def test_locations_names_and_refusals(tmp_path: Path) -> None:
    local = parse_location("repo", cwd=tmp_path)
    assert local.location == str(tmp_path / "repo") and not local.remote
    remote = parse_location("https://git.example.com/team/app.git", cwd=tmp_path)
    assert remote.remote and remote.host == "git.example.com" and default_name(remote) == "app"
    scp = parse_location("git@github.com:team/tool.git", cwd=tmp_path)
    assert scp.remote and scp.host == "github.com" and default_name(scp) == "tool"
    with pytest.raises(RepositoryRefused, match="credentials in a URL") as refused:
        parse_location("https://bob:hunter2@git.example.com/app.git", cwd=tmp_path)
    assert "hunter2" not in str(refused.value)
    registry = Registry.of([RepoAdded(repo="app", location="/srv/app")])
    with pytest.raises(RepositoryRefused, match="registered already"):
        registry.check_new("app", parse_location("/srv/other", cwd=tmp_path))
    with pytest.raises(RepositoryRefused, match="pick one with --name"):
        registry.check_new("has.dot", parse_location("/srv/x", cwd=tmp_path))


async def test_a_new_commit_is_seen_once_and_handed_to_the_indexer(store: EventStore, tmp_path: Path) -> None:
    repo, path = name(), tmp_path / "work"
    first = commit(path, {"a.py": "x = 1\n"})
    await store.append(RepoAdded(repo=repo, location=str(path)))
    indexer = Recorder()
    poller = Poller(store, tmp_path / "mirrors", CodeSettings(), indexer)
    registry = await poller.follower.refresh()
    assert await poller.poll(registry.repos[repo]) == first
    await eventually(lambda: indexer.calls, timeout=10, what="the indexer to be called")
    assert indexer.calls == [(repo, first, "")]
    assert await poller.poll((await poller.follower.refresh()).repos[repo]) == first  # nothing new: nothing handed
    second = commit(path, {"b.py": "y = 2\n"})
    await poller.poll((await poller.follower.refresh()).repos[repo])
    await eventually(lambda: len(indexer.calls) == 2, timeout=10, what="the second commit")
    seen = [e for e in await events_of(store, repo) if isinstance(e, RepoCommitSeen)]
    assert [e.commit for e in seen] == [first, second]


async def test_failures_are_events_and_open_the_hosts_circuit(store: EventStore, tmp_path: Path) -> None:
    missing, unreachable = name(), name()
    await store.append(RepoAdded(repo=missing, location=str(tmp_path / "gone")))
    url = f"git://127.0.0.1:{closed_port()}/app.git"
    await store.append(RepoAdded(repo=unreachable, location=url, remote=True))
    settings = CodeSettings(breaker_failures=2, breaker_cooldown=3600.0)
    poller = Poller(store, tmp_path / "mirrors", settings, Recorder(), fetch_timeout=20)
    registry = await poller.follower.refresh()
    assert await poller.poll(registry.repos[missing]) is None
    for _ in range(3):
        assert await poller.poll(registry.repos[unreachable]) is None
    assert poller.polls == 3  # the third poll of the unreachable host was skipped: its circuit is open
    [gone] = [e for e in await events_of(store, missing) if isinstance(e, RepoPollFailed)]
    assert "does not exist" in gone.reason
    failures = [e for e in await events_of(store, unreachable) if isinstance(e, RepoPollFailed)]
    assert len(failures) == 2 and all("unreachable" in f.reason for f in failures) and failures[0].host == "127.0.0.1"
    [opened] = [e for e in await events_of(store, unreachable) if isinstance(e, CircuitChanged)]
    assert (opened.state, opened.host, opened.failures) == ("open", "127.0.0.1", 2)


async def test_a_remote_is_mirrored_and_fetched(store: EventStore, tmp_path: Path) -> None:
    repo, origin = name(), tmp_path / "origin"
    first = commit(origin, {"a.py": "x = 1\n"})
    await store.append(RepoAdded(repo=repo, location=origin.as_uri(), remote=True))
    indexer = Recorder()
    poller = Poller(store, tmp_path / "mirrors", CodeSettings(), indexer)
    assert await poller.poll((await poller.follower.refresh()).repos[repo]) == first
    assert (tmp_path / "mirrors" / f"{repo}.git" / "HEAD").exists()
    second = commit(origin, {"b.py": "y = 2\n"})
    assert await poller.poll((await poller.follower.refresh()).repos[repo]) == second


async def test_running_polls_never_exceed_the_limit(store: EventStore, tmp_path: Path) -> None:
    for i in range(12):
        path = tmp_path / f"w{i}"
        commit(path, {"a.py": f"x = {i}\n"})
        await store.append(RepoAdded(repo=name(), location=str(path)))
    indexer = Recorder()
    settings = CodeSettings(poll_interval=0.5, max_concurrent_polls=2)
    poller = Poller(store, tmp_path / "mirrors", settings, indexer)
    stop = asyncio.Event()
    running = asyncio.create_task(poller.run(stop))
    await eventually(lambda: poller.polls >= 36, timeout=60, what="three rounds of polls")
    stop.set()
    await running
    assert 1 <= poller.max_in_flight <= 2


def test_remote_failures_are_told_apart_without_credentials() -> None:
    from projections.codeindex.poller import _remote_reason

    url = "https://git.example.com/team/app.git"
    assert "asks for credentials" in _remote_reason(url, "remote authentication required but no callback set")
    assert "asks for credentials" in _remote_reason(url, "unexpected http status code: 401")
    assert "unreachable" in _remote_reason(url, "failed to connect to 127.0.0.1: Connection refused")
    assert _remote_reason(url, "something else").startswith(f"fetching {url} failed")
