"""The `exec` handler: runs one of the device's allowlisted command lines, without a shell.

Only a command line that is, character for character, in the agent's `exec_allowlist`
runs; anything else is rejected before it starts (CommandRejected), so an operator's
certificate alone cannot run arbitrary programs on a device. The line is split with
`shlex.split` and started with `asyncio.create_subprocess_exec` in its own session:
no shell expands anything, and on a timeout the whole process group is killed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import signal
from dataclasses import dataclass
from typing import Any

from edge.errors import CommandError, InvalidArguments
from edge.handlers import HandlerContext

OUTPUT_CAP = 64 * 1024  # bytes kept of stdout and of stderr each; the rest is read and dropped
_CHUNK = 64 * 1024


@dataclass(frozen=True)
class Exec:
    """Runs `command` if it is in `allowlist`; answers {"exit_code", "stdout", "stderr", "*_truncated"}.

    A non-zero exit is a CommandError naming the exit code and the last line of stderr.
    """

    allowlist: frozenset[str] = frozenset()
    name: str = "exec"
    timeout_s: float = 300.0
    output_cap: int = OUTPUT_CAP

    def validate(self, args: dict[str, Any]) -> None:
        extra = sorted(set(args) - {"command"})
        if extra:
            raise InvalidArguments(f"exec does not take {', '.join(map(repr, extra))}; it takes 'command'")
        command = args.get("command")
        if not isinstance(command, str) or not command.strip():
            raise InvalidArguments("exec needs 'command', a command line from the device's exec_allowlist")
        if command not in self.allowlist:
            raise InvalidArguments(
                f"the command line {command!r} is not in this device's exec_allowlist; "
                "add that exact line to exec_allowlist in the device's agent.toml to allow it"
            )
        try:
            argv = shlex.split(command)
        except ValueError as exc:
            raise InvalidArguments(f"the command line {command!r} cannot be split ({exc}); fix its quoting") from None
        if not argv:
            raise InvalidArguments("exec needs 'command', a command line from the device's exec_allowlist")

    async def run(self, args: dict[str, Any], context: HandlerContext) -> Any:
        argv = shlex.split(args["command"])
        try:
            process = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,  # its own process group, so a timeout kills its children too
            )
        except OSError as exc:
            raise CommandError(
                f"cannot start {argv[0]!r}: {exc.strerror or exc}; fix the program path in exec_allowlist"
            ) from None
        try:
            assert process.stdout is not None and process.stderr is not None
            (stdout, out_cut), (stderr, err_cut) = await asyncio.gather(
                read_capped(process.stdout, self.output_cap), read_capped(process.stderr, self.output_cap)
            )
            exit_code = await process.wait()
        finally:
            if process.returncode is None:  # cancelled (the timeout) or failed while reading: stop it
                _kill(process)
                await process.wait()
        if exit_code != 0:
            raise CommandError(f"{argv[0]} exited with code {exit_code}{_last_line(stderr)}")
        return {
            "exit_code": exit_code,
            "stdout": stdout.decode(errors="replace"),
            "stderr": stderr.decode(errors="replace"),
            "stdout_truncated": out_cut,
            "stderr_truncated": err_cut,
        }


async def read_capped(stream: asyncio.StreamReader, cap: int) -> tuple[bytes, bool]:
    """Read `stream` to its end, keeping the first `cap` bytes; also says whether anything was dropped.

    Reading on after the cap keeps the pipe flowing, so a chatty process never blocks on it.
    """
    kept = bytearray()
    truncated = False
    while chunk := await stream.read(_CHUNK):
        room = cap - len(kept)
        if room > 0:
            kept += chunk[:room]
        if len(chunk) > room:
            truncated = True
    return bytes(kept), truncated


def _kill(process: asyncio.subprocess.Process) -> None:
    """SIGKILL the process's whole group (it leads its own session); just the process where there are no groups."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if hasattr(os, "killpg"):
            os.killpg(process.pid, signal.SIGKILL)
        else:  # pragma: no cover (Windows)
            process.kill()


def _last_line(stderr: bytes) -> str:
    lines = stderr.decode(errors="replace").strip().splitlines()
    return f": {lines[-1][:300]}" if lines else ""
