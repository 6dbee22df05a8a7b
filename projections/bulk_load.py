"""Bulk loading a fresh read-model file in a child process, fed raw messages by the rebuilding runner.

A rebuild replays the whole history. Done in one process, the event loop that receives
the messages would also decode them, fold them into rows and wait on SQLite, so the
replay would run at a fraction of the server's pace. Split in two, each side works on
its own core: the parent receives raw messages and writes them down a pipe; this child
decodes, applies in one transaction per batch (with the source's position, as the live
runner does), and creates the indexes only after the rows, which is several times faster
than maintaining them row by row. The pipe's buffer is the backpressure between the two.

The protocol is length-prefixed msgpack frames. The key travels in the first frame on
stdin, never in argv or the environment, where other users could see it.
"""

from __future__ import annotations

import asyncio
import pickle
import struct
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import msgspec
import sqlcipher3

from core.errors import MahavishnuError
from core.store import RawMessage
from projections.applying import BOOKKEEPING, is_index
from projections.projection import Projection
from projections.writing import AppliedTwice, write_batch

_LENGTH = struct.Struct(">I")


class LoadError(MahavishnuError):
    """The bulk load failed; the message says why."""


# --- frames --------------------------------------------------------------------------


class Start(msgspec.Struct, tag=True):
    path: str
    key: str
    projection: bytes  # the pickled projection (a stateless, importable class)


class Batch(msgspec.Struct, tag=True):
    source: str
    messages: list[RawMessage]


class Finish(msgspec.Struct, tag=True):
    pass


class Committed(msgspec.Struct, tag=True):
    applied: int  # in all, so far


class Finished(msgspec.Struct, tag=True):
    applied: int
    index_seconds: float


class Failed(msgspec.Struct, tag=True):
    reason: str


ToChild = Start | Batch | Finish
FromChild = Committed | Finished | Failed
_to_child = msgspec.msgpack.Decoder(ToChild)
_from_child = msgspec.msgpack.Decoder(FromChild)
_encoder = msgspec.msgpack.Encoder()


def frame(message: msgspec.Struct) -> bytes:
    body = _encoder.encode(message)
    return _LENGTH.pack(len(body)) + body


# --- the child -----------------------------------------------------------------------


class _Loader:
    def __init__(self, start: Start) -> None:
        self.projection: Projection = pickle.loads(start.projection)
        self.db = sqlcipher3.connect(start.path, isolation_level=None)
        self.db.execute(f"PRAGMA key = \"x'{start.key}'\"")
        # A file nobody reads until it is swapped in, and deleted if the load fails: its
        # rollback journal can stay in memory and nothing needs syncing, which saves
        # writing (and encrypting) every page twice, to the WAL and then to the file.
        self.db.execute("PRAGMA journal_mode = MEMORY")
        self.db.execute("PRAGMA synchronous = OFF")
        self.db.execute("PRAGMA cache_size = -8192")  # 8 MiB: more made the index builds no faster, only bigger
        self.db.execute("PRAGMA temp_store = FILE")  # the index sorts spill to a file, not to memory
        for statement in (*BOOKKEEPING, *self.projection.schema):
            if not is_index(statement):
                self.db.execute(statement)
        self.db.execute(
            "INSERT INTO projection_meta (name, version) VALUES (?, ?)", (self.projection.name, self.projection.version)
        )
        self.db.executemany(
            "INSERT INTO positions (source, position) VALUES (?, 0)", [(s,) for s in self.projection.sources]
        )
        self.applied = 0

    def load(self, batch: Batch) -> None:
        try:
            self.applied += write_batch(self.db, self.projection, batch.source, batch.messages).applied
        except AppliedTwice as exc:
            raise LoadError(f"{exc} (they arrived twice)") from exc

    def finish(self) -> float:
        started = time.perf_counter()
        for statement in self.projection.schema:
            if is_index(statement):
                self.db.execute(statement)
        self.db.execute("PRAGMA journal_mode = WAL")  # what the live runner writes with
        self.db.close()
        return time.perf_counter() - started


def _read_frame(stream: IO[bytes]) -> ToChild | None:
    header = stream.read(_LENGTH.size)
    if len(header) < _LENGTH.size:
        return None  # the parent went away
    message: ToChild = _to_child.decode(stream.read(_LENGTH.unpack(header)[0]))
    return message


def child_main() -> int:
    source, sink = sys.stdin.buffer, sys.stdout.buffer
    loader: _Loader | None = None
    try:
        while (message := _read_frame(source)) is not None:
            if isinstance(message, Start):
                loader = _Loader(message)
            elif loader is None:
                raise LoadError("the first frame must be Start")
            elif isinstance(message, Batch):
                loader.load(message)
                sink.write(frame(Committed(loader.applied)))
                sink.flush()
            else:
                sink.write(frame(Finished(loader.applied, loader.finish())))
                sink.flush()
                return 0
        return 1  # the parent gave up before Finish
    except Exception as exc:  # the process boundary: whatever it was, the parent must hear why
        traceback.print_exc(file=sys.stderr)
        sink.write(frame(Failed(f"{type(exc).__name__}: {exc}")))
        sink.flush()
        return 1


# --- the parent ----------------------------------------------------------------------


class BulkLoader:
    """The parent's handle on one child: `load()` batches, then `finish()`; `abort()` on failure."""

    def __init__(self, process: asyncio.subprocess.Process, progress: Callable[[int], None] | None) -> None:
        self.process = process
        self.progress = progress
        self.outcome: asyncio.Task[Finished] = asyncio.create_task(self._listen())

    @classmethod
    async def start(
        cls, projection: Projection, path: Path, key: str, progress: Callable[[int], None] | None = None
    ) -> BulkLoader:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "projections.bulk_load", stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
        )
        loader = cls(process, progress)
        await loader._send(Start(str(path), key, pickle.dumps(projection)))
        return loader

    async def load(self, source: str, messages: list[RawMessage]) -> None:
        if messages:
            await self._send(Batch(source, messages))

    async def finish(self) -> Finished:
        await self._send(Finish())
        finished = await self.outcome
        self._close_stdin()
        return finished

    async def abort(self) -> None:
        """Stop the child, whatever state it is in; safe to call after a failure."""
        if self.process.returncode is None:
            self.process.kill()
        self._close_stdin()
        await self.process.wait()
        self.outcome.cancel()
        await asyncio.gather(self.outcome, return_exceptions=True)

    def _close_stdin(self) -> None:
        if self.process.stdin is not None and not self.process.stdin.is_closing():
            self.process.stdin.close()

    async def _send(self, message: msgspec.Struct) -> None:
        assert self.process.stdin is not None
        try:
            self.process.stdin.write(frame(message))
            await self.process.stdin.drain()
        except (BrokenPipeError, ConnectionResetError):
            await self.outcome  # raises the child's reason
            raise LoadError("the bulk loader stopped reading") from None

    async def _listen(self) -> Finished:
        assert self.process.stdout is not None
        while True:
            try:
                header = await self.process.stdout.readexactly(_LENGTH.size)
                body = await self.process.stdout.readexactly(_LENGTH.unpack(header)[0])
            except asyncio.IncompleteReadError:
                code = await self.process.wait()
                raise LoadError(f"the bulk loader exited with status {code} before finishing") from None
            message: Any = _from_child.decode(body)
            if isinstance(message, Failed):
                raise LoadError(message.reason)
            if isinstance(message, Finished):
                await self.process.wait()
                return message
            if self.progress:
                self.progress(message.applied)


if __name__ == "__main__":
    sys.exit(child_main())
