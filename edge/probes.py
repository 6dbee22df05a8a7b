"""The agent's /health, /ready and /metrics, over plain HTTP, with asyncio streams only.

A device has no room for a web framework, and a probe needs none: one GET per
connection, three paths, bodies of a few bytes. Bound to loopback unless agent.toml
says otherwise (`probe_host`), since a device's health is for its own supervisor
(systemd, a container runtime) and for a Prometheus on the same host or tunnel.

GET /health   200 while the agent's loops run, else 503: restart me.
GET /ready    200 when connected and its outbox is empty (everything reported), else 503.
GET /metrics  Prometheus text: commands run by outcome, the outbox's size, connected or not.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable

log = logging.getLogger("mahavishnu.agent.probes")

REQUEST_TIMEOUT_S = 5.0
_REASONS = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable"}


def respond(
    method: str, path: str, *, health: Callable[[], bool], ready: Callable[[], bool], metrics: Callable[[], bytes]
) -> tuple[int, str, bytes]:
    """The status, content type and body for one request (pure, given the checks)."""
    if path not in ("/health", "/ready", "/metrics"):
        return 404, "application/json", b'{"error": "no such path: /health, /ready and /metrics exist"}'
    if method != "GET":
        return 405, "application/json", b'{"error": "only GET"}'
    if path == "/metrics":
        return 200, "text/plain; version=0.0.4; charset=utf-8", metrics()
    if path == "/health":
        ok = health()
        return (200 if ok else 503), "application/json", json.dumps({"status": "ok" if ok else "unhealthy"}).encode()
    ok = ready()
    return (200 if ok else 503), "application/json", json.dumps({"ready": ok}).encode()


class AgentProbes:
    """An HTTP listener answering `respond()`; `port` is the bound one after start() (0 asks for a free port)."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        health: Callable[[], bool],
        ready: Callable[[], bool],
        metrics: Callable[[], bytes],
    ) -> None:
        self.host = host
        self.port = port
        self._health, self._ready, self._metrics = health, ready, metrics
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        """Listen; OSError (port taken, address not local) is the caller's to report."""
        self._server = await asyncio.start_server(self._answer, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("serving /health, /ready and /metrics", extra={"host": self.host, "port": self.port})

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), REQUEST_TIMEOUT_S)
            method, path, *_ = [*request.split(b"\r\n", 1)[0].decode("latin-1").split(" "), "", ""]
            status, content_type, body = respond(
                method, path.split("?", 1)[0], health=self._health, ready=self._ready, metrics=self._metrics
            )
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            status, content_type, body = 400, "text/plain", b"bad request"
        except Exception:  # a check that raises answers 503, like the control services' probes
            log.warning("a probe check raised", exc_info=True)
            status, content_type, body = 503, "application/json", b'{"error": "the check failed"}'
        head = (
            f"HTTP/1.1 {status} {_REASONS.get(status, 'Bad Request')}\r\n"
            f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        )
        with contextlib.suppress(ConnectionError):
            writer.write(head.encode("latin-1") + body)
            await writer.drain()
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


def exposition(commands: dict[str, int], *, outbox: int, connected: bool) -> bytes:
    """The agent's metrics in the Prometheus text format (pure).

    Written out rather than built with prometheus-client: the agent installs with nats-py
    and msgspec only, and three metric families need no library.
    """
    lines = [
        "# HELP mahavishnu_agent_commands_total Commands this agent finished, by outcome.",
        "# TYPE mahavishnu_agent_commands_total counter",
        *(
            f'mahavishnu_agent_commands_total{{outcome="{outcome}"}} {count}'
            for outcome, count in sorted(commands.items())
        ),
        "# HELP mahavishnu_agent_outbox_events Events recorded on the device and not yet acknowledged by the mesh.",
        "# TYPE mahavishnu_agent_outbox_events gauge",
        f"mahavishnu_agent_outbox_events {outbox}",
        "# HELP mahavishnu_agent_connected 1 while the agent is connected to the mesh.",
        "# TYPE mahavishnu_agent_connected gauge",
        f"mahavishnu_agent_connected {int(connected)}",
    ]
    return ("\n".join(lines) + "\n").encode()
