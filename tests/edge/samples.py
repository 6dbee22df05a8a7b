"""Shared builders for the edge tests."""

from __future__ import annotations

import os
import select
import shlex
import sys
from datetime import UTC, datetime
from typing import Any

from core.events import CommandEvent, CommandIssued

DEVICE = "pump-7"
T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


def issued(
    name: str = "ping",
    args: dict[str, Any] | None = None,
    *,
    ttl_s: float = 30.0,
    timeout_s: float = 10.0,
    occurred_at: datetime = T0,
    correlation_id: str | None = None,
    command_id: str = "cmd-1",
) -> CommandIssued:
    return CommandIssued(
        command_id=command_id,
        device_id=DEVICE,
        name=name,
        args=args or {},
        ttl_s=ttl_s,
        timeout_s=timeout_s,
        occurred_at=occurred_at,
        actor="control",
        correlation_id=correlation_id,
    )


def meta_of(event: object) -> dict[str, Any]:
    """The metadata and command fields of a command event, to rebuild an expected one around them."""
    return {name: getattr(event, name) for name in CommandEvent.__struct_fields__}


def python_line(code: str, *extra: str) -> str:
    """A command line running `code` with this interpreter (no site: it starts faster)."""
    return shlex.join([sys.executable, "-S", "-c", code, *extra])


def gone(pid: int, timeout: float = 5.0) -> bool:
    """Whether `pid` has exited (waits on a pidfd up to `timeout`, no polling); a zombie counts as exited."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        readable, _, _ = select.select([fd], [], [], timeout)
        return bool(readable)
    finally:
        os.close(fd)
