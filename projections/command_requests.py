"""A command as an operator asks for it at the HTTP door, and the door's way to send it (no web framework here).

Apart from projections.http_commands so that the control side (mahavishnu.control.commands,
which the command line imports) can give the door its `send` without importing starlette.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import msgspec


class CommandRequest(msgspec.Struct, forbid_unknown_fields=True):
    """A command as the dashboard's form sends it; the bounds are `cmd send`'s sense of a command's life."""

    name: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$", description="e.g. ping, info")]
    args: dict[str, Any] = {}
    ttl_s: Annotated[float, msgspec.Meta(gt=0, le=7 * 86400, description="time to live before delivery")] = 30.0
    timeout_s: Annotated[float, msgspec.Meta(gt=0, le=86400, description="how long it may run")] = 10.0


# (actor, device, command) -> the new command's id; raises MahavishnuError when it cannot be stored.
Send = Callable[[str, str, CommandRequest], Awaitable[str]]
