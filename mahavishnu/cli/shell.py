"""`mahavishnu shell DEVICE`: an interactive terminal on a device, for the admin and operator roles.

It connects as an operator (`--as NAME`: the files `operator add` wrote to
HOME/operators/NAME; or `--cert/--key/--ca`), asks the broker in `up` to open a shell on
the device, and then copies keystrokes there and output here until the session ends; the
last line says why (the shell exited, idle timeout, maximum duration, ...). When stdin
is a terminal it is put in raw mode, so Ctrl-C, Ctrl-D and arrows reach the remote
shell, and restored on the way out; without one, the end of stdin is sent as Ctrl-D.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import sys
import termios
import time
import tty
from collections.abc import Iterator
from pathlib import Path

from core import subjects
from core.config import Settings
from core.errors import MahavishnuError
from core.store import connect
from core.units import format_duration
from mahavishnu.gateways.shell.client import Operator, ShellClient, operator_from_files, operator_from_folder
from mahavishnu.gateways.shell.errors import ShellError
from mahavishnu.gateways.shell.protocol import Output
from mahavishnu.runtime.home import Home

EOF_KEY = b"\x04"  # Ctrl-D: what a terminal sends for the end of input
# How long a terminal keeps asking when no broker answers (up restarting): the new broker
# answers for a session the old one left, with the reason it ended (broker_restarted).
BROKER_GRACE_S = 30.0
BROKER_RETRY_S = 0.5
AWAY = ("503", "504")  # no broker answers, or not in time


def add(shell: argparse.ArgumentParser) -> None:
    shell.add_argument("device", help="device id")
    shell.add_argument("--shell", default="", help="a path from the device's shell_allowlist (default: its first)")
    shell.add_argument(
        "--as",
        dest="operator",
        default=os.environ.get("MAHAVISHNU_OPERATOR"),
        help="operator name: its files in HOME/operators/NAME (default: $MAHAVISHNU_OPERATOR)",
    )
    shell.add_argument("--cert", help="operator certificate (instead of --as), with --key and --ca")
    shell.add_argument("--key", help="its private key")
    shell.add_argument("--ca", help="the mesh CA certificate")
    shell.add_argument("--server", help="mesh URL, tls://host:port (default: this machine's mesh)")
    shell.set_defaults(handler=run_shell)


def operator_of(home: Home, settings: Settings, args: argparse.Namespace) -> Operator:
    url = args.server or home.client_url(settings)
    if args.cert or args.key or args.ca:
        if not (args.cert and args.key and args.ca):
            raise MahavishnuError("--cert, --key and --ca go together: pass all three")
        return operator_from_files(url, Path(args.cert), Path(args.key), Path(args.ca))
    if not args.operator:
        raise MahavishnuError(
            "say which operator you are: --as NAME (files in HOME/operators/NAME) or --cert, --key and --ca"
        )
    return operator_from_folder(home, url, args.operator)


async def run_shell(home: Home, settings: Settings, args: argparse.Namespace) -> int:
    operator = operator_of(home, settings, args)
    rows, cols = _window()
    # Raw from the start, so that nothing typed once the banner shows is cooked or lost.
    with _raw(sys.stdin.fileno()):
        nc = await connect(
            operator.identity,
            name=f"mahavishnu-shell-{operator.name}",
            reconnect=False,
            inbox_prefix=subjects.inbox_prefix(operator.name),
        )
        try:
            client = ShellClient(nc)
            opened = await client.open(
                args.device, shell=args.shell, rows=rows, cols=cols, term=os.environ.get("TERM", "xterm")
            )
            _say(
                f"connected to {opened.device} ({opened.shell}), session {opened.session}; it closes after "
                f"{format_duration(opened.idle_timeout_s)} without a keystroke and after "
                f"{format_duration(opened.max_duration_s)} in all"
            )
            end = await Terminal(client, opened.session).run()
            _say(f"session {opened.session} {end.message}")
        finally:
            with contextlib.suppress(Exception):
                await nc.close()
    if end.reason in ("exited", "closed"):
        return end.exit_code if end.exit_code is not None and end.exit_code >= 0 else 0
    return 1


class Terminal:
    """Copies stdin to the session and the session to stdout until it ends; `run()` returns its last Output."""

    def __init__(self, client: ShellClient, session: str, *, stdin: int = 0, stdout: int = 1) -> None:
        self.client = client
        self.session = session
        self.stdin = stdin
        self.stdout = stdout
        self._typed: asyncio.Queue[bytes] = asyncio.Queue()

    async def run(self) -> Output:
        loop = asyncio.get_running_loop()
        loop.add_reader(self.stdin, self._readable)
        resizing = os.isatty(self.stdin)
        if resizing:
            loop.add_signal_handler(signal.SIGWINCH, lambda: asyncio.ensure_future(self._resize()))
        sending = asyncio.create_task(self._send())
        receiving = asyncio.create_task(self._receive())
        try:
            # Sending ends early at the end of stdin, and fails only with a refusal; the session
            # ends when the reader hears so.
            await asyncio.wait({sending, receiving}, return_when="FIRST_COMPLETED")
            if sending.done() and not sending.cancelled() and sending.exception() is not None:
                sending.result()
            return await receiving
        finally:
            sending.cancel()
            receiving.cancel()
            with contextlib.suppress(ValueError, OSError):
                loop.remove_reader(self.stdin)
            if resizing:
                loop.remove_signal_handler(signal.SIGWINCH)

    def _readable(self) -> None:
        try:
            data = os.read(self.stdin, 4096)
        except OSError:
            data = b""
        if not data:  # the end of stdin: no more keystrokes
            asyncio.get_running_loop().remove_reader(self.stdin)
        self._typed.put_nowait(data)

    async def _send(self) -> None:
        """Keystrokes in order, what piled up meanwhile in one request."""
        while True:
            data = await self._typed.get()
            ended = not data
            while not ended and not self._typed.empty():
                more = self._typed.get_nowait()
                ended = not more
                data += more
            try:
                await self.client.send(self.session, data + (EOF_KEY if ended else b""))
            except ShellError as exc:
                if exc.code == "409" or exc.code in AWAY:  # ended, or no broker: the reader says why
                    return
                raise
            if ended:
                return

    async def _receive(self) -> Output:
        after = 0
        while True:
            output = await self._read(after)
            if output.data:
                _write_all(self.stdout, output.data)
            after = output.offset + len(output.data)
            if output.ended:
                return output

    async def _read(self, after: int) -> Output:
        """The next read; while no broker answers, asked again for BROKER_GRACE_S, then the end, saying so."""
        away_since: float | None = None
        while True:
            try:
                return await self.client.read(self.session, after)
            except ShellError as exc:
                if exc.code not in AWAY:
                    raise
                now = time.monotonic()
                away_since = away_since if away_since is not None else now
                if self.client.nc.is_closed or now - away_since >= BROKER_GRACE_S:
                    return lost(after, str(exc))
            await asyncio.sleep(BROKER_RETRY_S)  # a broker coming back is no event this connection can wait on

    async def _resize(self) -> None:
        rows, cols = _window()
        with contextlib.suppress(ShellError):
            await self.client.resize(self.session, rows, cols)


def lost(offset: int, why: str) -> Output:
    """The end of a session whose broker is gone (pure): the last line says so and why."""
    message = (
        f"lost: no terminal broker answers for it ({why}); if `up` restarted, its broker ends the "
        "shell on the device and records it; open a new session"
    )
    return Output(offset=offset, ended=True, reason="broker_lost", message=message)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _window() -> tuple[int, int]:
    size = shutil.get_terminal_size((80, 24))
    return size.lines, size.columns


@contextlib.contextmanager
def _raw(fd: int) -> Iterator[None]:
    """Raw mode on a terminal (keystrokes go through as they are), restored however the block ends."""
    if not os.isatty(fd):
        yield
        return
    saved = termios.tcgetattr(fd)
    tty.setraw(fd, termios.TCSADRAIN)  # not TCSAFLUSH: keep what was typed ahead
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def _say(message: str) -> None:
    """A line of our own on stderr; \\r\\n, since a raw terminal does not turn \\n into a new line."""
    sys.stderr.write(f"[{message}]\r\n")
    sys.stderr.flush()
