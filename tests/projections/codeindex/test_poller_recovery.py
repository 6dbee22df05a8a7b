"""The poller after things went wrong: re-registrations, half-made mirrors, bad answers, silent and recovering hosts.

All against real things: git repositories made with pygit2, an HTTP server that asks for
credentials, a TCP listener that never answers, a `git daemon` that comes up late.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pygit2
import pytest

from core.config import CodeSettings
from core.events import CircuitChanged, RepoAdded, RepoPollFailed, RepoRemoved
from core.metrics import CodeIndexMetrics, new_registry
from core.store import EventStore
from projections.codeindex.poller import Poller
from tests.projections.codeindex.test_poller import Recorder, closed_port, commit, events_of, name
from tests.tools import tool
from tests.waiting import eventually, wait_until


async def failures(store: EventStore, repo: str) -> list[str]:
    return [e.reason for e in await events_of(store, repo) if isinstance(e, RepoPollFailed)]


async def test_a_repository_removed_and_added_again_is_indexed_again(store: EventStore, tmp_path: Path) -> None:
    repo, path = name(), tmp_path / "work"
    head = commit(path, {"a.py": "x = 1\n"})
    await store.append(RepoAdded(repo=repo, location=str(path)))
    indexer = Recorder()
    poller = Poller(store, tmp_path / "mirrors", CodeSettings(), indexer)
    await poller.poll((await poller.follower.refresh()).repos[repo])
    await eventually(lambda: indexer.calls, timeout=10, what="the first indexing")
    # Removed and added again before the poller looked: its index was dropped, so the same head is new again.
    await store.append(RepoRemoved(repo=repo))
    await store.append(RepoAdded(repo=repo, location=str(path)))
    await poller.poll((await poller.follower.refresh()).repos[repo])
    await eventually(lambda: len(indexer.calls) == 2, timeout=10, what="indexing after the new registration")
    assert indexer.calls == [(repo, head, ""), (repo, head, "")]


async def test_a_mirror_whose_first_clone_failed_takes_the_remotes_head_later(
    store: EventStore, tmp_path: Path
) -> None:
    repo, origin = name(), tmp_path / "origin"
    await store.append(RepoAdded(repo=repo, location=origin.as_uri(), remote=True))
    poller = Poller(store, tmp_path / "mirrors", CodeSettings(), Recorder())
    registered = (await poller.follower.refresh()).repos[repo]
    assert await poller.poll(registered) is None  # nothing there yet: a half-made mirror is left behind
    assert (tmp_path / "mirrors" / f"{repo}.git" / "HEAD").exists()
    pygit2.init_repository(str(origin), initial_head="trunk")  # a default branch the mirror cannot guess
    head = commit(origin, {"a.py": "x = 1\n"})
    assert await poller.poll(registered) == head


async def test_a_mirror_follows_a_new_url_for_the_same_name(store: EventStore, tmp_path: Path) -> None:
    repo, old, new = name(), tmp_path / "old", tmp_path / "new"
    commit(old, {"a.py": "old = 1\n"})
    moved = commit(new, {"a.py": "new = 1\n"})
    await store.append(RepoAdded(repo=repo, location=old.as_uri(), remote=True))
    poller = Poller(store, tmp_path / "mirrors", CodeSettings(), Recorder())
    await poller.poll((await poller.follower.refresh()).repos[repo])
    await store.append(RepoRemoved(repo=repo))
    await store.append(RepoAdded(repo=repo, location=new.as_uri(), remote=True))
    assert await poller.poll((await poller.follower.refresh()).repos[repo]) == moved


async def test_an_unknown_branch_and_a_plain_directory_are_reasons(store: EventStore, tmp_path: Path) -> None:
    branchless, plain = name(), name()
    commit(tmp_path / "work", {"a.py": "x = 1\n"})
    (tmp_path / "plain").mkdir()
    await store.append(RepoAdded(repo=branchless, location=str(tmp_path / "work"), branch="release"))
    await store.append(RepoAdded(repo=plain, location=str(tmp_path / "plain")))
    poller = Poller(store, tmp_path / "mirrors", CodeSettings(), Recorder())
    registry = await poller.follower.refresh()
    assert await poller.poll(registry.repos[branchless]) is None
    assert await poller.poll(registry.repos[plain]) is None
    assert poller.failures == 2
    [unknown] = await failures(store, branchless)
    assert "has no branch 'release'" in unknown
    [not_a_repo] = await failures(store, plain)
    assert "is not a git repository" in not_a_repo


class _AsksForCredentials(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # the name http.server dispatches to
        self.send_response(401)
        self.send_header("WWW-Authenticate", 'Basic realm="git"')
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass  # the test's output is not the place for its access log


@pytest.fixture
def asks_for_credentials() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _AsksForCredentials)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/team/app.git"
    server.shutdown()
    server.server_close()
    thread.join()


async def test_a_remote_asking_for_credentials_says_how_to_give_them(
    store: EventStore, tmp_path: Path, asks_for_credentials: str
) -> None:
    repo = name()
    await store.append(RepoAdded(repo=repo, location=asks_for_credentials, remote=True))
    poller = Poller(store, tmp_path / "mirrors", CodeSettings(), Recorder(), fetch_timeout=10)
    assert await poller.poll((await poller.follower.refresh()).repos[repo]) is None
    [reason] = await failures(store, repo)
    assert "asks for credentials" in reason and "credential helper" in reason


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections (the kernel does) and never says a word."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield int(listener.getsockname()[1])


async def test_a_silent_remote_fails_within_the_fetch_timeout_and_frees_its_slot(
    store: EventStore, tmp_path: Path, silent_port: int
) -> None:
    repo = name()
    await store.append(RepoAdded(repo=repo, location=f"git://127.0.0.1:{silent_port}/app.git", remote=True))
    poller = Poller(store, tmp_path / "mirrors", CodeSettings(), Recorder(), fetch_timeout=1)
    started = time.monotonic()
    assert await poller.poll((await poller.follower.refresh()).repos[repo]) is None
    assert time.monotonic() - started < 15  # libgit2 gave up: the git thread itself ended, not just our wait
    assert poller.in_flight == 0
    [reason] = await failures(store, repo)
    assert "timed out" in reason


class LateDaemon:
    """A `git daemon` on a port chosen now and started later (so that, until then, the port is closed)."""

    def __init__(self, git: str) -> None:
        self.git = git
        self.port = closed_port()
        self.process: subprocess.Popen[bytes] | None = None

    def serve(self, base: Path) -> None:
        self.process = subprocess.Popen(
            [self.git, "daemon", "--reuseaddr", "--listen=127.0.0.1", f"--port={self.port}", "--export-all",
             f"--base-path={base}", str(base)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip


@pytest.fixture
def late_daemon() -> Iterator[LateDaemon]:
    daemon = LateDaemon(tool("git"))  # `git daemon`: skips without git, fails in CI
    yield daemon
    if daemon.process is not None:  # stopped by its own handle, never by name
        daemon.process.terminate()
        daemon.process.wait(timeout=10)


def _accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


async def test_a_hosts_circuit_opens_then_a_trial_poll_after_the_cooldown_closes_it(
    store: EventStore, tmp_path: Path, late_daemon: LateDaemon
) -> None:
    port = late_daemon.port
    repo, served = name(), tmp_path / "served"
    head = commit(served / "app", {"a.py": "x = 1\n"})
    await store.append(RepoAdded(repo=repo, location=f"git://127.0.0.1:{port}/app", remote=True))
    now = [1000.0]
    settings = CodeSettings(breaker_failures=2, breaker_cooldown=60.0)
    poller = Poller(store, tmp_path / "mirrors", settings, Recorder(), clock=lambda: now[0], fetch_timeout=10)
    registered = (await poller.follower.refresh()).repos[repo]
    for _ in range(3):  # two failures open the circuit; the third poll is not even tried
        assert await poller.poll(registered) is None
    assert poller.polls == 2

    late_daemon.serve(served)
    await asyncio.to_thread(wait_until, lambda: _accepts(port), timeout=30, what="git daemon to listen")
    now[0] += 30.0
    assert await poller.poll(registered) is None and poller.polls == 2  # still cooling down
    now[0] += 31.0
    assert await poller.poll(registered) == head  # the trial poll
    assert poller.breakers["127.0.0.1"].state == "closed"
    changes = [e for e in await events_of(store, repo) if isinstance(e, CircuitChanged)]
    assert [(c.state, c.host) for c in changes] == [("open", "127.0.0.1"), ("half-open", "127.0.0.1"),
                                                    ("closed", "127.0.0.1")]  # fmt: skip


async def test_polls_and_circuits_are_exported_to_prometheus(store: EventStore, tmp_path: Path) -> None:
    good, bad = name(), name()
    commit(tmp_path / "work", {"a.py": "x = 1\n"})
    await store.append(RepoAdded(repo=good, location=str(tmp_path / "work")))
    await store.append(RepoAdded(repo=bad, location=f"git://127.0.0.1:{closed_port()}/app.git", remote=True))
    registry = new_registry()
    settings = CodeSettings(breaker_failures=2)
    poller = Poller(store, tmp_path / "mirrors", settings, Recorder(), metrics=CodeIndexMetrics(registry))
    repos = await poller.follower.refresh()
    await poller.poll(repos.repos[good])
    await poller.poll(repos.repos[bad])
    circuit = {"host": "127.0.0.1"}
    assert registry.get_sample_value("mahavishnu_circuit_state", circuit) == 0  # known, closed
    await poller.poll(repos.repos[bad])
    assert registry.get_sample_value("mahavishnu_polls_total", {"repo": good, "outcome": "ok"}) == 1
    assert registry.get_sample_value("mahavishnu_polls_total", {"repo": bad, "outcome": "failed"}) == 2
    assert registry.get_sample_value("mahavishnu_circuit_state", circuit) == 2  # open


async def test_a_removed_repository_leaves_no_lag_behind(store: EventStore, tmp_path: Path) -> None:
    repo = name()
    commit(tmp_path / "work", {"a.py": "x = 1\n"})
    await store.append(RepoAdded(repo=repo, location=str(tmp_path / "work")))
    registry = new_registry()
    poller = Poller(
        store, tmp_path / "mirrors", CodeSettings(poll_interval=0.2), Recorder(), metrics=CodeIndexMetrics(registry)
    )
    stop = asyncio.Event()
    running = asyncio.create_task(poller.run(stop))
    lag = {"repo": repo}
    await eventually(
        lambda: registry.get_sample_value("mahavishnu_index_lag_seconds", lag) == 0, timeout=10, what="lag 0"
    )
    await store.append(RepoRemoved(repo=repo))
    await eventually(
        lambda: registry.get_sample_value("mahavishnu_index_lag_seconds", lag) is None, timeout=10, what="no lag"
    )
    stop.set()
    await running
