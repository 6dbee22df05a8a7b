"""The broker's side of the agents' PTY protocol (edge.shell_protocol): requests and keystrokes out, output in.

`ask` is the one place where nats-py's errors of a request to a device become ShellErrors:
no responders is 503 (no agent of the device is connected), a timeout 504, a reply that is
not a ShellReply 502. What the agents send back (`mesh.pty.out.*.*`, `mesh.pty.end.*.*`)
goes to the two callbacks given to `listen`, with the device and session of its subject;
an agent's end reason is translated into the session's (mahavishnu.gateways.shell.session).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import msgspec
import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg

from core.store.nats_errors import unanswered
from edge.shell_protocol import (
    ShellControl,
    ShellReply,
    control_subject,
    encode,
    ended_decoder,
    input_subject,
    parse_session_subject,
    reply_decoder,
)
from mahavishnu.gateways.shell.errors import ShellError

OPEN_TIMEOUT_S = 10.0
CONTROL_TIMEOUT_S = 5.0
DEVICE_REASONS = {"agent_stopped": "device_lost", "idle_timeout": "idle_timeout", "max_duration": "max_duration"}

OnOutput = Callable[[str, str, bytes], None]  # device, session, what the terminal printed
OnEnd = Callable[[str, str, str, int | None], None]  # device, session, the session's reason, exit code


class DeviceLink:
    """Requests to agents, keystrokes to agents, and what agents print, on the control connection `nc`."""

    def __init__(self, nc: Client) -> None:
        self.nc = nc
        self._subscriptions: list[Any] = []

    async def ask(self, device: str, control: ShellControl, timeout: float = CONTROL_TIMEOUT_S) -> ShellReply:
        """The agent's reply to `control`; ShellError 503 when offline, 504 when silent, 502 for nonsense."""
        try:
            msg = await self.nc.request(control_subject(device), encode(control), timeout=timeout)
        except (nats.errors.Error, TimeoutError) as exc:  # not answered: translated in one place
            no = unanswered(
                exc,
                asked=f"device {device}",
                timeout=timeout,
                nobody=f"device {device} is offline: no agent of it is connected; start its agent and try again",
            )
            raise ShellError(no.status, no.description) from None
        try:
            return reply_decoder.decode(msg.data)
        except msgspec.DecodeError as exc:
            raise ShellError(502, f"device {device} answered nonsense: {exc}") from None

    async def type(self, device: str, session: str, data: bytes) -> None:
        await self.nc.publish(input_subject(device, session), data)

    async def listen(self, on_output: OnOutput, on_end: OnEnd) -> None:
        async def output(msg: Msg) -> None:
            parsed = parse_session_subject(msg.subject)
            if parsed is not None:
                on_output(parsed[1], parsed[2], msg.data)

        async def end(msg: Msg) -> None:
            parsed = parse_session_subject(msg.subject)
            if parsed is None:
                return
            try:
                ended = ended_decoder.decode(msg.data)
            except msgspec.DecodeError:
                return
            on_end(parsed[1], parsed[2], DEVICE_REASONS.get(ended.reason, ended.reason), ended.exit_code)

        self._subscriptions += [
            await self.nc.subscribe("mesh.pty.out.*.*", cb=output),
            await self.nc.subscribe("mesh.pty.end.*.*", cb=end),
        ]

    async def close(self) -> None:
        for subscription in self._subscriptions:
            with contextlib.suppress(nats.errors.Error):
                await subscription.unsubscribe()
        self._subscriptions = []
