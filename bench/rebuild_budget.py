"""Where a rebuild's CPU goes, per event: replay, decode, apply, insert, index, each stage timed alone.

    python bench/rebuild_budget.py [--events N]

bench/rebuild.py times the whole rebuild against a raw replay; this one splits it into
the stages of the pipeline, run one after the other in this process on the same N audit
events (bench/rebuild.py's), so each figure is CPU time of that stage alone:
  replay  the parent's side: core.store.replay of the stream, each list framed for the pipe
          (and, beside it, what the nats-server spent sending)
  decode  the child's side of the pipe (msgpack frames) and the events' own decoding
  apply   the projection's fold into statements (for audit: the entry's hash, its JSON)
  insert  the statements and positions written, one transaction per batch
  index   the indexes built after the rows, and the final checkpoint
A rebuild runs replay on one core and the rest on another (projections.bulk_load), so the
slower of the two sides bounds its rate; on 2 cores the nats-server takes its share from
both. Each side's rate alone is printed too (the parent's with the server beside it, the
child's on one core), with the raw replay of bench/rebuild.py measured in the same run:
the slower side is what a rebuild would reach with a third core for the server.
Progress to stderr; the last line on stdout:
    rebuild_budget events=N replay_us=.. server_us=.. decode_us=.. apply_us=.. insert_us=.. index_us=..
"""

from __future__ import annotations

import argparse
import pickle
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import msgspec
import sqlcipher3

from bench.rebuild import baseline, cpu_seconds, fill
from core.config import load_config
from core.logs import configure_logging
from core.store import EventStore, StoredEvent, connect
from mahavishnu.runtime.home import Home
from mahavishnu.runtime.provisioning import prepare
from mahavishnu.runtime.server import NatsServer
from projections.applying import MOVE_POSITION, batch_statements
from projections.audit import Audit
from projections.bulk_load import Batch, Start, _Loader, frame
from projections.database import ensure_key_file

BATCH = 5_000  # ProjectionRunner's bulk_batch
SOURCE = "mesh.audit.>"


async def replayed(store: EventStore, server_pid: int) -> tuple[list[bytes], float, float, float]:
    """The frames the parent would write down the pipe: with its CPU seconds, the server's, and the wall time."""
    frames: list[bytes] = []
    mine, server, started = time.process_time(), cpu_seconds(server_pid), time.perf_counter()
    async for messages in store.replay(SOURCE, 1, batch=BATCH):
        frames.append(frame(Batch(SOURCE, messages)))
    return frames, time.process_time() - mine, cpu_seconds(server_pid) - server, time.perf_counter() - started


def child_stages(frames: list[bytes], path: Path, key: str) -> dict[str, float]:
    """CPU seconds of each of the child's stages, over every frame."""
    decoder = msgspec.msgpack.Decoder(Batch)
    projection = Audit()
    loader = _Loader(Start(str(path), key, pickle.dumps(projection)))
    spent = dict.fromkeys(("decode", "apply", "insert", "index"), 0.0)
    for data in frames:
        started = time.process_time()
        batch = decoder.decode(data[4:])
        stored = [StoredEvent.of(*message) for message in batch.messages]
        decoded = time.process_time()
        statements = batch_statements(projection, stored)
        applied = time.process_time()
        loader.db.execute("BEGIN")
        for sql, rows in statements:
            loader.db.executemany(sql, rows)
        loader.db.execute(MOVE_POSITION, (stored[-1].seq, SOURCE, stored[0].seq))
        loader.db.execute("COMMIT")
        inserted = time.process_time()
        spent["decode"] += decoded - started
        spent["apply"] += applied - decoded
        spent["insert"] += inserted - applied
    started = time.process_time()
    loader.finish()
    spent["index"] = time.process_time() - started
    check = sqlcipher3.connect(str(path))
    check.execute(f"PRAGMA key = \"x'{key}'\"")
    count = check.execute("SELECT count(*), sum(chain_ok) FROM audit").fetchone()
    check.close()
    assert count[0] == count[1] == sum(len(decoder.decode(f[4:]).messages) for f in frames), count
    return spent


async def main(n: int) -> str:
    with tempfile.TemporaryDirectory(prefix="mahavishnu-bench-") as tmp:
        settings = load_config(None, env={})
        home = Home(Path(tmp))
        prepare(home, settings, port=-1, monitor_port=0)
        key = ensure_key_file(home.root).read_text().strip()
        server = NatsServer(home.server_conf, name="bench")
        endpoints = server.start()
        try:
            nc = await connect(home.control_identity(settings, endpoints.port), name="bench", reconnect=False)
            store = EventStore(nc)
            await store.ensure_streams()
            await fill(store, n)
            assert server.process is not None
            base = await baseline(nc, n)
            frames, replay_s, server_s, replay_wall = await replayed(store, server.process.pid)
            await nc.close()
        finally:
            server.stop()
        print(f"replayed {n:,} events into {len(frames)} frames", file=sys.stderr)
        started = time.perf_counter()
        spent = child_stages(frames, Path(tmp) / "budget.db", key)
        child_wall = time.perf_counter() - started
    us = {name: seconds / n * 1e6 for name, seconds in {"replay": replay_s, "server": server_s, **spent}.items()}
    child = us["decode"] + us["apply"] + us["insert"] + us["index"]
    print(f"per event: parent {us['replay']:.1f} us, child {child:.1f} us", file=sys.stderr)
    # Each side alone, at full speed: the parent's with the server beside it on the other
    # core, the child's on its own. With a core each, a rebuild runs at the slower of them.
    parent_rate, child_rate = n / replay_wall, n / child_wall
    print(
        f"alone: parent side {parent_rate:,.0f}/s, child side {child_rate:,.0f}/s, baseline replay {base:,.0f}/s;"
        f" with a core each (3 cores) a rebuild would run at {min(parent_rate, child_rate):,.0f}/s,"
        f" ratio {min(parent_rate, child_rate) / base:.2f}",
        file=sys.stderr,
    )
    return f"rebuild_budget events={n} " + " ".join(f"{name}_us={value:.1f}" for name, value in us.items())


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=200_000)
    options = parser.parse_args()
    configure_logging(level="warning", fmt="text")
    import uvloop

    print(uvloop.run(main(options.events)))
