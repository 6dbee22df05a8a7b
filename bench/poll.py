"""Polling without a thundering herd: 100 repositories at a 30-second interval for 3 minutes.

    python bench/poll.py [--repos N] [--interval S] [--seconds T] [--unreachable U]

Creates N local git repositories (U of them registered as remotes on a closed loopback
port instead, so that polls fail and their host's circuit opens), starts an embedded
nats-server with the mesh's own configuration, registers them all (RepoAdded events) and
runs the Poller with `max_concurrent_polls = 2` for T seconds. Every poll is counted and
the most polls ever running at once recorded; new commits are handed to a no-op indexer
(indexing has its own benchmark, bench/index.py). As a baseline in the same run, the
same repositories are polled by a naive loop that starts them all at once every interval
(what a cron job per repository would do), and its peak concurrency is reported too.
Progress goes to stderr; the last line on stdout is
    poll repos=N polls=P max_concurrent=C failures=F
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pygit2

from core.config import CodeSettings, load_config
from core.events import RepoAdded
from core.logs import configure_logging
from core.store import EventStore, connect
from mahavishnu.runtime.home import Home
from mahavishnu.runtime.provisioning import prepare
from mahavishnu.runtime.server import NatsServer
from projections.codeindex.poller import Poller


def make_repository(path: Path, n: int) -> None:
    repo = pygit2.init_repository(str(path), initial_head="main")
    blob = repo.create_blob(f"VALUE = {n}\n".encode())
    builder = repo.TreeBuilder()
    builder.insert("app.py", blob, pygit2.enums.FileMode.BLOB)
    who = pygit2.Signature("bench", "bench@example.com")
    repo.create_commit("HEAD", who, who, "one", builder.write(), [])


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def naive_peak(poller: Poller) -> int:
    """The herd: every repository polled at the same moment, as independent timers would."""
    running = peak = 0

    async def one(repo: object) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0)  # each poll starts before any ends: that is the herd
        running -= 1

    await asyncio.gather(*(one(r) for r in poller.follower.registry.repos.values()))
    return peak


async def main(repos: int, interval: float, seconds: float, unreachable: int) -> str:
    with tempfile.TemporaryDirectory(prefix="mahavishnu-bench-") as tmp:
        settings = load_config(None, env={})
        home = Home(Path(tmp) / "home")
        prepare(home, settings, port=-1, monitor_port=0)
        server = NatsServer(home.server_conf, name="bench")
        endpoints = server.start()
        try:
            nc = await connect(home.control_identity(settings, endpoints.port), name="bench", reconnect=False)
            store = EventStore(nc)
            await store.ensure_streams()
            port = closed_port()
            for n in range(repos):
                name = f"repo-{n:03d}"
                if n < unreachable:
                    await store.append(RepoAdded(repo=name, location=f"git://127.0.0.1:{port}/{name}.git", remote=True))
                    continue
                path = Path(tmp) / "repos" / name
                make_repository(path, n)
                await store.append(RepoAdded(repo=name, location=str(path)))
            print(f"{repos} repositories registered ({unreachable} unreachable)", file=sys.stderr)

            handed = 0

            async def no_op_indexer(repo: str, git_dir: Path, commit: str, previous: str) -> None:
                nonlocal handed
                handed += 1

            code = CodeSettings(poll_interval=interval, max_concurrent_polls=2)
            poller = Poller(store, Path(tmp) / "mirrors", code, no_op_indexer, fetch_timeout=10)
            stop = asyncio.Event()
            running = asyncio.create_task(poller.run(stop))
            started = time.monotonic()
            while time.monotonic() - started < seconds:
                await asyncio.sleep(min(5.0, seconds / 10))  # a bench reports progress on its own clock
                print(
                    f"  {time.monotonic() - started:5.0f} s: {poller.polls} polls, {poller.failures} failed,"
                    f" at most {poller.max_in_flight} at once, {handed} commits handed on",
                    file=sys.stderr,
                )
            stop.set()
            await running
            herd = await naive_peak(poller)
            print(f"baseline: a timer per repository polls {herd} at once", file=sys.stderr)
            await nc.close()
        finally:
            server.stop()
    return f"poll repos={repos} polls={poller.polls} max_concurrent={poller.max_in_flight} failures={poller.failures}"


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repos", type=int, default=100)
    parser.add_argument("--interval", type=float, default=30.0)
    parser.add_argument("--seconds", type=float, default=180.0)
    parser.add_argument("--unreachable", type=int, default=5)
    options = parser.parse_args()
    configure_logging(level="error", fmt="text")
    import uvloop

    print(uvloop.run(main(options.repos, options.interval, options.seconds, options.unreachable)))
