"""Running a device-side program (a hook script, the health check) with a deadline and bounded output.

The program gets only the environment it is given (never the agent's own, which may hold
secrets), runs in a process group of its own so a timeout kills what it started too, and
its output is kept to the last OUTPUT_LIMIT bytes and redacted before anyone sees it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from core.redaction import redact

OUTPUT_LIMIT = 4096  # bytes of a program's output kept: its tail, where the error usually is
# Where a program looks for the tools it runs; the agent's own PATH is not passed on.
SAFE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True)
class Ran:
    """How a program ended: its exit code (None when it was killed at its deadline) and its redacted output."""

    code: int | None
    output: str

    @property
    def ok(self) -> bool:
        return self.code == 0

    def summary(self) -> str:
        """One line: how it ended and the last line of its output."""
        ended = "timed out" if self.code is None else f"exited {self.code}"
        last = next((line.strip() for line in reversed(self.output.splitlines()) if line.strip()), "")
        return f"{ended}: {last[:200]}" if last else ended


async def run_bounded(argv: Sequence[str], *, env: Mapping[str, str], timeout: float, cwd: Path | None = None) -> Ran:
    """Run `argv` (no shell) until it ends or `timeout` seconds pass; never raises for the program's sake.

    A cancellation (the caller's own deadline) kills the process group before it propagates.
    """
    try:
        process = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env={"PATH": SAFE_PATH, **env},
            cwd=cwd,
            start_new_session=True,  # its own process group: a kill reaches its children too
        )
    except OSError as exc:
        return Ran(code=127, output=f"cannot start {argv[0]}: {exc.strerror or exc}")
    assert process.stdout is not None
    tail = bytearray()

    async def read() -> None:
        assert process.stdout is not None
        while chunk := await process.stdout.read(65536):
            tail.extend(chunk)
            del tail[:-OUTPUT_LIMIT]  # bounded, whatever the program writes

    code: int | None = None
    try:
        async with asyncio.timeout(timeout):
            await read()
            code = await process.wait()
    except TimeoutError:
        code = None
    finally:
        if process.returncode is None:
            _kill_group(process.pid)
            with contextlib.suppress(ProcessLookupError):
                await asyncio.shield(process.wait())
    return Ran(code=code, output=redact(tail.decode("utf-8", "replace")))


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
