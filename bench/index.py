"""Code-index throughput: a full index of a generated Python repository, then an incremental one.

    python bench/index.py [--lines N] [--changed K] [--workers W]

Generates a git repository of N lines (100,000 by default) of Python shaped like
application code (imports, constants, dataclasses, classes with methods, functions,
docstrings) with a few secrets planted, in a temporary directory. Starts an embedded
nats-server with the mesh's own configuration (mTLS, encrypted JetStream), then:
  - full: `Indexer.index` of the head commit, from the call to CommitIndexed acknowledged
    (the worker pool is started first, as a service does once);
  - incremental: a commit changing K files (10 by default), with the code read model
    following the stream as in `mahavishnu up`; timed from the moment it
    exists, through the RepoCommitSeen a poller would append, to the commit being queryable
    (code.repos shows it as the indexed commit);
  - baseline: the same files through `analyse_file`, one after another in this process,
    without git or NATS: what one core does with the analysis alone.
The stream is then read back and searched for every planted secret value. Progress goes
to stderr; the last line on stdout is
    index files=F lines=L seconds=S lines_per_s=R incremental_s=I baseline_lines_per_s=B ratio=X
"""

from __future__ import annotations

import argparse
import asyncio
import random
import secrets
import string
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pygit2
from pygit2.enums import FileMode

from core.config import load_config
from core.events import CommitIndexed, FileIndexed, RepoAdded, RepoCommitSeen, SecretFound
from core.logs import configure_logging
from core.store import EventStore, connect
from mahavishnu.runtime.home import Home
from mahavishnu.runtime.provisioning import prepare
from mahavishnu.runtime.server import NatsServer
from projections import readers
from projections.code_queries import ReposQuery, code_repos
from projections.codeindex.analyse import analyse_file
from projections.codeindex.indexer import Indexer
from projections.reading import QueryError, ReadModels
from projections.service import ProjectionService

REPO = "bench"
NOUNS = ["device", "command", "event", "stream", "order", "report", "sensor", "batch", "client", "record", "shadow"]
VERBS = ["load", "save", "send", "parse", "build", "check", "apply", "fetch", "render", "update", "merge", "split"]
STDLIB = ["json", "logging", "os", "re", "time", "hashlib", "itertools", "functools", "asyncio", "contextlib"]


def _name(rng: random.Random) -> tuple[str, str]:
    return rng.choice(VERBS), rng.choice(NOUNS)


def python_module(rng: random.Random, target_lines: int, package: str) -> str:
    """One module of about `target_lines` lines, as an application's code looks."""
    verb, noun = _name(rng)
    out = [
        f'"""The {noun} {verb}er: {verb}s {noun}s and keeps track of what it did.',
        "",
        f"Used by the {rng.choice(NOUNS)} service; see {package}.{rng.choice(NOUNS)} for the other half.",
        '"""',
        "",
        "from __future__ import annotations",
        "",
        *sorted(f"import {m}" for m in rng.sample(STDLIB, 4)),
        "from collections.abc import Iterable, Iterator",
        "from dataclasses import dataclass, field",
        f"from {package}.{rng.choice(NOUNS)} import {rng.choice(NOUNS).capitalize()}Error",
        "",
        "log = logging.getLogger(__name__)",
        f"MAX_{noun.upper()}S = {rng.randint(10, 10_000)}",
        f'DEFAULT_{rng.choice(NOUNS).upper()} = "{rng.choice(NOUNS)}-{rng.randint(1, 99)}"',
    ]
    while len(out) < target_lines:
        if rng.random() < 0.45:
            out += _class(rng)
        else:
            out += _function(rng)
    return "\n".join(out) + "\n"


def _class(rng: random.Random) -> list[str]:
    noun = rng.choice(NOUNS)
    name = noun.capitalize() + rng.choice(["Store", "Handler", "Manager", "Service", "Index"])
    lines = [
        "",
        "",
        "@dataclass",
        f"class {name}:",
        f'    """Keeps {noun}s by key and answers questions about them.',
        "",
        f"    A {noun} is stored once per key; older ones are dropped past `limit`.",
        '    """',
        "",
        "    items: dict[str, int] = field(default_factory=dict)",
        f"    limit: int = {rng.randint(5, 500)}",
        "    seen: list[str] = field(default_factory=list)",
    ]
    for _ in range(rng.randint(2, 6)):
        verb = rng.choice(VERBS)
        lines += [
            "",
            f"    def {verb}_{noun}(self, key: str, value: int = 0, *extra: str, **options: object) -> int | None:",
            f'        """{verb.capitalize()} one {noun}; returns the new count, or None when the store is full."""',
            "        if len(self.items) >= self.limit:",
            f'            log.warning("%s full: %d {noun}s", type(self).__name__, len(self.items))',
            "            return None",
            "        self.items[key] = self.items.get(key, 0) + value",
            "        self.seen.extend(part for part in extra if part not in self.seen)",
            f"        if options.get({rng.choice(VERBS)!r}):",
            f"            self._{rng.choice(VERBS)}(key, options)",
            "        return self.items[key]",
        ]
    return lines


def _function(rng: random.Random) -> list[str]:
    verb, noun = _name(rng)
    return [
        "",
        "",
        f"def {verb}_{noun}s(rows: Iterable[dict[str, object]], *, strict: bool = False) -> Iterator[str]:",
        f'    """{verb.capitalize()} {noun}s from rows, one JSON line each.',
        "",
        "    With `strict`, a row that cannot be encoded raises; otherwise it is logged and skipped.",
        '    """',
        "    for number, row in enumerate(rows, start=1):",
        "        try:",
        "            yield json.dumps({key: row[key] for key in sorted(row)}, separators=(',', ':'))",
        "        except (TypeError, ValueError) as exc:",
        "            if strict:",
        f'                raise ValueError(f"{noun} row {{number}}: {{exc}}") from exc',
        f'            log.debug("skipped {noun} row %d", number)',
    ]


def planted_secrets(rng: random.Random) -> list[tuple[str, str]]:
    """(a line of code holding it, the secret value), made afresh each run."""
    b32 = string.ascii_uppercase + "234567"
    alnum = string.ascii_letters + string.digits
    aws = "AKIA" + "".join(rng.choice(b32) for _ in range(16))
    github = "ghp_" + "".join(rng.choice(alnum) for _ in range(36))
    password = "".join(rng.choice(alnum) for _ in range(20))
    return [
        (f'AWS_ACCESS_KEY_ID = "{aws}"', aws),
        (f'GITHUB_TOKEN = "{github}"', github),
        (f'DATABASE_URL = "postgres://app:{password}@db.internal:5432/app"', password),
    ]


def generate(rng: random.Random, total_lines: int) -> tuple[dict[str, bytes], list[str]]:
    """Files (path -> bytes) of about `total_lines` lines, and the secret values planted in them."""
    files: dict[str, bytes] = {}
    planted = planted_secrets(rng)
    lines = 0
    index = 0
    while lines < total_lines:
        package = f"pkg{index % 20:02d}"
        size = min(rng.randint(60, 450), max(total_lines - lines, 10))
        text = python_module(rng, size, package)
        if index < len(planted):  # near the top of a few modules, as configuration often is
            head, _, rest = text.partition("\n\n")
            text = f"{head}\n\n{planted[index][0]}\n\n{rest}"
        files[f"src/{package}/{rng.choice(VERBS)}_{rng.choice(NOUNS)}_{index}.py"] = text.encode()
        lines += text.count("\n")
        index += 1
    return files, [value for _, value in planted]


def commit_tree(repo: pygit2.Repository, files: dict[str, bytes], parents: list[str]) -> str:
    """Commit `files` as the whole tree on main; returns the commit id."""
    signature = pygit2.Signature("Bench", "bench@example.invalid")
    return str(repo.create_commit("refs/heads/main", signature, signature, "bench", _tree(repo, files), parents))


def _tree(repo: pygit2.Repository, files: dict[str, bytes]) -> pygit2.Oid:
    here: dict[str, bytes] = {}
    below: dict[str, dict[str, bytes]] = {}
    for path, data in files.items():
        head, _, rest = path.partition("/")
        if rest:
            below.setdefault(head, {})[rest] = data
        else:
            here[head] = data
    builder = repo.TreeBuilder()
    for name, data in here.items():
        builder.insert(name, repo.create_blob(data), FileMode.BLOB)
    for name, subtree in below.items():
        builder.insert(name, _tree(repo, subtree), FileMode.TREE)
    return builder.write()


def baseline(files: dict[str, bytes], key: bytes) -> float:
    started = time.perf_counter()
    for path, data in files.items():
        analyse_file(path, data, mode="redact", hash_key=key)
    return time.perf_counter() - started


async def main(total_lines: int, changed: int, workers: int) -> str:
    rng = random.Random(20261122)
    key = secrets.token_bytes(32)
    with tempfile.TemporaryDirectory(prefix="mahavishnu-bench-") as tmp:
        files, planted = generate(rng, total_lines)
        lines = sum(data.count(b"\n") for data in files.values())
        git_dir = Path(tmp) / "repo"
        repo = pygit2.init_repository(str(git_dir), initial_head="main")
        first = commit_tree(repo, files, [])
        print(f"generated {len(files):,} files, {lines:,} lines, {len(planted)} planted secrets", file=sys.stderr)

        settings = load_config(None, env={})
        home = Home(Path(tmp) / "home")
        prepare(home, settings, port=-1, monitor_port=0)
        server = NatsServer(home.server_conf, name="bench")
        endpoints = server.start()
        try:
            nc = await connect(home.control_identity(settings, endpoints.port), name="bench", reconnect=False)
            store = EventStore(nc)
            await store.ensure_streams()
            limit = settings.code.max_file_size
            indexer = Indexer(store, mode="redact", hash_key=key, max_file_size=limit, workers=workers)
            started = time.perf_counter()
            await indexer.start()
            print(f"worker pool of {workers} started in {time.perf_counter() - started:.2f} s", file=sys.stderr)

            await store.append(RepoAdded(repo=REPO, location=str(git_dir), branch="main"))
            started = time.perf_counter()
            full = await indexer.index(REPO, git_dir, first)
            seconds = time.perf_counter() - started
            assert full.files_changed == len(files), full
            print(f"full index: {seconds:.2f} s, {lines / seconds:,.0f} lines/s", file=sys.stderr)

            edited = dict(files)
            for path in rng.sample(sorted(files), min(changed, len(files))):
                edited[path] = files[path] + f"\n\ndef added_{rng.randint(0, 10**6)}() -> int:\n    return 1\n".encode()
            second = commit_tree(repo, edited, [first])

            # Queryable means in the code-index read model: the projection follows the stream
            # (as in `mahavishnu up`) while the new commit is indexed.
            models = ReadModels(Path(tmp) / "readmodels", secrets.token_hex(32), store)
            models.folder.mkdir()
            projections = ProjectionService(store, models.folder, models.key, names=("code",))
            started = time.perf_counter()
            await projections.start()
            built = time.perf_counter() - started
            print(f"code read model built from the full index in {built:.2f} s", file=sys.stderr)
            stop = asyncio.Event()
            following = asyncio.create_task(projections.run(stop))

            started = time.perf_counter()
            await store.append(RepoCommitSeen(repo=REPO, commit=second, previous=first))
            incremental = await indexer.index(REPO, git_dir, second, previous=first)
            while not await indexed_at(models, second):  # noqa: ASYNC110  (the read model has no event to await)
                await asyncio.sleep(0.002)
            incremental_s = time.perf_counter() - started
            stop.set()
            await following
            await projections.close()
            readers.close(models.folder)
            assert incremental.files_changed == min(changed, len(files)), incremental
            print(f"incremental index of {incremental.files_changed} files: {incremental_s:.3f} s", file=sys.stderr)
            await indexer.close()

            found, leaked, events = await check_stream(store, planted)
            print(f"stream: {events:,} events, {found} secrets found, {leaked} values leaked", file=sys.stderr)
            assert leaked == 0 and found >= len(planted), (found, leaked)
            await nc.close()
        finally:
            server.stop()
        base_seconds = baseline(files, key)
    rate, base = lines / seconds, lines / base_seconds
    print(f"baseline (serial analyse_file, no git or NATS): {base_seconds:.2f} s, {base:,.0f} lines/s", file=sys.stderr)
    return (
        f"index files={len(files)} lines={lines} seconds={seconds:.2f} lines_per_s={rate:.0f} "
        f"incremental_s={incremental_s:.3f} baseline_lines_per_s={base:.0f} ratio={rate / base:.2f}"
    )


async def indexed_at(models: ReadModels, commit: str) -> bool:
    try:
        repos = (await code_repos(models, ReposQuery()))["repos"]
    except QueryError:
        return False  # not built yet
    return any(r["repo"] == REPO and r["indexed_commit"] == commit for r in repos)


async def check_stream(store: EventStore, planted: list[str]) -> tuple[int, int, int]:
    """How many secrets the stream records, how many planted values appear in its raw bytes, how many events."""
    found = leaked = events = 0
    async for stored in store.read(f"mesh.evt.repo.{REPO}.>"):
        events += 1
        found += isinstance(stored.event, SecretFound)
        leaked += sum(value.encode() in stored.data for value in planted)
        assert stored.event is not None, stored.error
        assert isinstance(stored.event, FileIndexed | SecretFound | CommitIndexed | RepoCommitSeen | RepoAdded), (
            stored.event
        )
    return found, leaked, events


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=100_000, help="lines of Python to generate")
    parser.add_argument("--changed", type=int, default=10, help="files the incremental commit changes")
    parser.add_argument("--workers", type=int, default=load_config(None, env={}).code.index_workers)
    options = parser.parse_args()
    configure_logging(level="warning", fmt="text")
    import uvloop

    print(uvloop.run(main(options.lines, options.changed, options.workers)))
