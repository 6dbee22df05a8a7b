"""What an operator and the shell broker say to each other (pure): subjects, bodies, how long a read waits.

    mesh.shell.open             {"device", "shell", "rows", "cols", "term"} -> Opened
    mesh.shell.input.<session>  keystrokes (raw bytes)                      -> empty
    mesh.shell.read.<session>   {"after": offset}                           -> Output (waits up to POLL_WAIT_S)
    mesh.shell.resize.<session> {"rows", "cols"}                            -> empty
    mesh.shell.close.<session>  empty                                       -> empty

Bodies are JSON. A refusal is an empty body with micro's error headers
(mahavishnu.gateways.shell.errors). The broker serves these (mahavishnu.gateways.shell.broker),
the operator's client asks them (mahavishnu.gateways.shell.client).
"""

from __future__ import annotations

import msgspec

SERVICE_NAME = "mahavishnu-shell"
PREFIX = "mesh.shell"
POLL_WAIT_S = 1.0  # a read waits this long for output before answering empty
READ_MAX = 64 * 1024  # the most output one read returns
INPUT_MAX = 64 * 1024  # the most keystrokes one input request delivers


class OpenRequest(msgspec.Struct, frozen=True, kw_only=True):
    device: str
    shell: str = ""
    rows: int = 24
    cols: int = 80
    term: str = "xterm"


class Opened(msgspec.Struct, frozen=True, kw_only=True):
    session: str
    device: str
    shell: str
    idle_timeout_s: float
    max_duration_s: float


class ReadRequest(msgspec.Struct, frozen=True, kw_only=True):
    after: int = 0


class Output(msgspec.Struct, frozen=True, kw_only=True):
    """Output from `offset` on; `ended` once the session is over and everything it printed was read."""

    offset: int
    data: bytes = b""
    ended: bool = False
    reason: str = ""
    message: str = ""
    exit_code: int | None = None


class Resize(msgspec.Struct, frozen=True, kw_only=True):
    rows: int
    cols: int
