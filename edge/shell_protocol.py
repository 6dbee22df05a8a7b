"""The remote terminal between the control side and an agent: subjects and message bodies (pure).

    mesh.pty.ctl.<device>              control -> agent, a request: ShellControl; the reply is ShellReply
    mesh.pty.in.<device>.<session>     control -> agent: keystrokes, raw bytes
    mesh.pty.out.<device>.<session>    agent -> control: what the terminal printed, raw bytes, in order
    mesh.pty.end.<device>.<session>    agent -> control: ShellEnded, once, after the last output

Only the control identity may publish the first two (devices' permissions allow neither;
mahavishnu.control.permissions); a device subscribes to its own control and input subjects,
publishes only its own output and end subjects, and answers control requests through
the server's allow_responses. Operators never reach these subjects: they talk to the
control side's broker (mahavishnu.gateways.shell.broker), which binds a session to one connection.
"""

from __future__ import annotations

import re
from typing import Literal

import msgspec

PREFIX = "mesh.pty"
SESSION_ID = re.compile(r"[0-9a-f]{32}")  # uuid4().hex: unguessable, and one subject token

Operation = Literal["open", "close", "resize", "ping"]


class ShellControl(msgspec.Struct, frozen=True, kw_only=True):
    """What the control side asks of an agent.

    open: start `shell` ("" is the device's first allowed shell) in a PTY of rows x cols;
    the agent ends it by itself after `idle_s` without keystrokes or `max_s` in all, plus
    a grace period: a backstop for a control side that went away, which enforces both first.
    close: end it; resize: change the window; ping: is the session still there?
    """

    op: Operation
    session: str
    shell: str = ""
    rows: int = 24
    cols: int = 80
    term: str = "xterm"
    idle_s: float = 900.0
    max_s: float = 1800.0


class ShellReply(msgspec.Struct, frozen=True, kw_only=True):
    """The agent's answer: ok, or the reason it refused (one line, shown to the operator)."""

    ok: bool
    error: str = ""
    shell: str = ""
    pid: int = 0


EndReason = Literal["exited", "closed", "idle_timeout", "max_duration", "agent_stopped", "failed"]


class ShellEnded(msgspec.Struct, frozen=True, kw_only=True):
    """The shell is gone: why, and its exit status when it exited by itself (or was killed: -signal)."""

    reason: EndReason
    exit_code: int | None = None


control_decoder = msgspec.json.Decoder(ShellControl)
reply_decoder = msgspec.json.Decoder(ShellReply)
ended_decoder = msgspec.json.Decoder(ShellEnded)
encode = msgspec.json.encode


def valid_session(session: str) -> bool:
    return bool(SESSION_ID.fullmatch(session))


def control_subject(device_id: str) -> str:
    return f"{PREFIX}.ctl.{device_id}"


def input_subject(device_id: str, session: str) -> str:
    return f"{PREFIX}.in.{device_id}.{session}"


def output_subject(device_id: str, session: str) -> str:
    return f"{PREFIX}.out.{device_id}.{session}"


def end_subject(device_id: str, session: str) -> str:
    return f"{PREFIX}.end.{device_id}.{session}"


def parse_session_subject(subject: str) -> tuple[str, str, str] | None:
    """(kind, device, session) of a mesh.pty.<kind>.<device>.<session> subject; None for anything else."""
    parts = subject.split(".")
    if len(parts) != 5 or f"{parts[0]}.{parts[1]}" != PREFIX or not valid_session(parts[4]):
        return None
    return parts[2], parts[3], parts[4]


def pick_shell(requested: str, allowlist: tuple[str, ...]) -> str:
    """The shell to start for `requested` ("" for the first allowed one); ValueError saying why not (pure).

    Only exact paths from the device's shell_allowlist: the operator's word is never a command line.
    """
    if not allowlist:
        raise ValueError("this device allows no shells: add shell_allowlist to its agent.toml to allow one")
    if not requested:
        return allowlist[0]
    if requested not in allowlist:
        raise ValueError(
            f"the shell {requested!r} is not in this device's shell_allowlist ({', '.join(allowlist)}); "
            "pick one of those or add it to the device's agent.toml"
        )
    return requested
