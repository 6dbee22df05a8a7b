"""A shell in a pseudo-terminal: start it, feed it keystrokes, read what it prints, end it (thin I/O).

The shell gets the PTY's slave side as stdin, stdout and stderr, leads a session of its
own and has the PTY as its controlling terminal (TIOCSCTTY in the child), so job control,
Ctrl-C and the window size behave as on a console. Its environment is a small fixed one
(PATH, HOME, USER, LOGNAME, LANG, TERM, SHELL), never the agent's own, which may hold
settings the person at the terminal has no business seeing.

Ending it sends SIGHUP to its whole process group, as a terminal hang-up does, and SIGKILL
to what is left after KILL_GRACE_S: background jobs started from the shell go with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import functools
import os
import pty
import pwd
import signal
import struct
import termios
from collections.abc import Callable

KILL_GRACE_S = 1.0
_READ = 64 * 1024
_SAFE_ENV = ("PATH", "LANG", "LC_ALL", "TZ")


def _controlling_terminal(slave: int) -> None:  # pragma: no cover (runs in the child, between fork and exec)
    # A session of its own, then the PTY as its controlling terminal, named by the slave's
    # own descriptor: uvloop (the control host's loop) runs preexec_fn before it makes the
    # slave the child's stdin, the standard loop after; either way `slave` is still open.
    os.setsid()
    fcntl.ioctl(slave, termios.TIOCSCTTY, 0)


def shell_environment(shell: str, term: str, environ: dict[str, str]) -> dict[str, str]:
    """The shell's environment (pure apart from the password database): a few safe variables, no secrets."""
    env = {key: environ[key] for key in _SAFE_ENV if key in environ}
    env.setdefault("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
    try:
        user = pwd.getpwuid(os.getuid())
        env.update(HOME=user.pw_dir, USER=user.pw_name, LOGNAME=user.pw_name)
    except KeyError:
        env["HOME"] = "/"
    env.update(TERM=term or "xterm", SHELL=shell)
    return env


def set_window(fd: int, rows: int, cols: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", max(rows, 1), max(cols, 1), 0, 0))


class PtyShell:
    """One running shell; `on_output(bytes)` gets what it prints, `on_output(b"")` once at the end."""

    def __init__(self, process: asyncio.subprocess.Process, master: int, on_output: Callable[[bytes], None]) -> None:
        self.process = process
        self.pid = process.pid
        self._master = master
        self._on_output = on_output
        self._pending = bytearray()  # keystrokes the PTY did not take yet
        self._eof = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_reader(master, self._readable)

    @classmethod
    async def start(
        cls, shell: str, *, rows: int, cols: int, term: str, on_output: Callable[[bytes], None]
    ) -> PtyShell:
        """Start `shell` in a new PTY; OSError when it cannot be started (no such file, not executable)."""
        master, slave = pty.openpty()
        try:
            set_window(slave, rows, cols)
            os.set_blocking(master, False)
            environment = shell_environment(shell, term, dict(os.environ))
            home = environment["HOME"] if os.path.isdir(environment["HOME"]) else "/"  # noqa: ASYNC240 (a stat)
            process = await asyncio.create_subprocess_exec(
                shell,
                stdin=slave,
                stdout=slave,
                stderr=slave,
                # its own session, whose controlling terminal the PTY becomes
                preexec_fn=functools.partial(_controlling_terminal, slave),
                env=environment,
                cwd=home,
            )
        except BaseException:
            os.close(master)
            raise
        finally:
            os.close(slave)  # the child has it; without our copy, its end shows as EIO on the master
        return cls(process, master, on_output)

    def write(self, data: bytes) -> None:
        """Type `data` into the terminal; what the PTY cannot take now waits, in order."""
        if self._master < 0:
            return
        self._pending += data
        self._flush()

    def resize(self, rows: int, cols: int) -> None:
        if self._master >= 0:
            set_window(self._master, rows, cols)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGWINCH)

    async def wait(self) -> int:
        """Wait for the shell to exit and its last output to be read; its exit status (-N: killed by signal N)."""
        code = await self.process.wait()
        with contextlib.suppress(TimeoutError):  # a background job may hold the terminal open: do not wait for it
            await asyncio.wait_for(self._eof.wait(), KILL_GRACE_S)
        self._close()
        return code

    async def end(self) -> int:
        """Hang up: SIGHUP to the shell's process group, SIGKILL after KILL_GRACE_S; its exit status."""
        self._signal(signal.SIGHUP)
        try:
            code = await asyncio.wait_for(self.process.wait(), KILL_GRACE_S)
        except TimeoutError:
            self._signal(signal.SIGKILL)
            code = await self.process.wait()
        self._signal(signal.SIGKILL)  # what it left behind in its group
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._eof.wait(), KILL_GRACE_S)
        self._close()
        return code

    def _signal(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, sig)

    def _readable(self) -> None:
        try:
            data = os.read(self._master, _READ)
        except BlockingIOError:
            return
        except OSError:  # EIO: every slave end is closed, the shell is gone
            data = b""
        if data:
            self._on_output(data)
            return
        asyncio.get_running_loop().remove_reader(self._master)
        if not self._eof.is_set():
            self._eof.set()
            self._on_output(b"")

    def _flush(self) -> None:
        loop = asyncio.get_running_loop()
        while self._pending:
            try:
                written = os.write(self._master, self._pending)
            except BlockingIOError:
                loop.add_writer(self._master, self._writable)
                return
            except OSError:
                self._pending.clear()
                return
            del self._pending[:written]
        loop.remove_writer(self._master)

    def _writable(self) -> None:
        self._flush()

    def _close(self) -> None:
        if self._master < 0:
            return
        loop = asyncio.get_running_loop()
        loop.remove_reader(self._master)
        loop.remove_writer(self._master)
        if not self._eof.is_set():
            self._eof.set()
            self._on_output(b"")
        os.close(self._master)
        self._master = -1
