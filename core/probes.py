"""An HTTP server for /metrics, /health and /ready, run inside the caller's event loop.

    probes = ProbeServer("127.0.0.1", settings.metrics.port, registry, ready=store.is_connected)
    await probes.start()        # listening when this returns; probes.port is the bound port
    ...
    await probes.stop()

GET /metrics  the registry, in Prometheus text or OpenMetrics format as the Accept header asks,
              plus mahavishnu_ready (1 or 0: what /ready would answer now).
GET /health   200 {"status": "ok"} while the process runs and health() (if given) is
              true, else 503 {"status": "unhealthy"}: restart me.
GET /ready    200 {"ready": true} when ready() is true, else 503 {"ready": false}:
              do not send me work yet.

uvicorn serves the Starlette app as a task of the running loop. It must not touch
process-wide state: `_EmbeddedServer` turns off its signal capture (the host process
owns SIGINT/SIGTERM), `log_config=None` keeps it from reconfiguring logging (its
records reach the root logger, redacted like any other), and the access log is off.
We bind the listening socket ourselves, so a busy port is a ProbeError here instead of
uvicorn's `sys.exit(1)` inside a task.

With `tls` (a ServerTLS) the server speaks HTTPS only, asks clients for a certificate
without requiring one, verifies any it gets against the given CA, and hands the routes
the verified certificate in the ASGI TLS extension (core.asgi_tls).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import socket
import ssl
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import uvicorn
from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from core.asgi_tls import TLSScopeH11Protocol
from core.errors import MahavishnuError

__all__ = ["ProbeError", "ProbeServer", "ServerTLS"]

log = logging.getLogger(__name__)

Check = Callable[[], bool | Awaitable[bool]]


class ProbeError(MahavishnuError):
    """The probe server could not start: its port is taken or it did not come up in time."""


@dataclass(frozen=True)
class ServerTLS:
    """Serve HTTPS with `cert` and `key`; ask for client certificates (optional) and verify them against `client_ca`."""

    cert: Path
    key: Path
    client_ca: Path

    def check(self) -> None:
        """ProbeError naming the file when the certificate, key or CA cannot be loaded (before uvicorn tries)."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        try:
            context.load_cert_chain(self.cert, self.key)
            context.load_verify_locations(self.client_ca)
        except (OSError, ssl.SSLError) as exc:
            raise ProbeError(
                f"cannot serve HTTPS with {self.cert}, its key and the CA {self.client_ca}: {exc}; "
                "check the files (or turn TLS off)"
            ) from exc


class _EmbeddedServer(uvicorn.Server):
    """uvicorn.Server that leaves signal handlers alone and tells when it listens.

    uvicorn 0.54's `serve()` wraps everything in `capture_signals()`, which replaces the
    SIGINT/SIGTERM handlers with its own for the server's lifetime (from the main thread)
    and re-raises caught signals afterwards. An embedded server must do neither, so the
    context manager is replaced by one that does nothing.
    """

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.listening = asyncio.Event()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started:
            self.listening.set()


class _WithReadiness:
    """The registry's metrics plus `mahavishnu_ready`, the /ready answer at scrape time.

    The availability SLO divides the scrapes that found the service ready by all scrapes
    (Prometheus's own `up` counts those that failed). Computed per scrape rather than
    registered, so several probe servers may share one registry.
    """

    def __init__(self, registry: CollectorRegistry, ready: bool) -> None:
        self._registry = registry
        self._ready = ready

    def collect(self) -> Iterator[Metric]:
        yield from self._registry.collect()
        yield GaugeMetricFamily(
            "mahavishnu_ready", "1 when the service is ready (/ready answers 200).", int(self._ready)
        )


async def _call(check: Check) -> bool:
    result = check()
    if inspect.isawaitable(result):
        result = await result
    return bool(result)


class ProbeServer:
    """Serve /metrics, /health and /ready for one process; see the module docstring.

    `ready` and `health` may be plain or async callables; a plain one runs on the event
    loop, so it must be quick. One that raises counts as false (and is logged). `port` 0
    asks the system for a free port.
    """

    def __init__(
        self,
        host: str,
        port: int,
        registry: CollectorRegistry,
        *,
        ready: Check,
        health: Check | None = None,
        routes: Sequence[BaseRoute] = (),
        tls: ServerTLS | None = None,
    ) -> None:
        self._host = host
        self._tls = tls
        self._port = port
        self._registry = registry
        self._ready = ready
        self._health = health
        self._server: _EmbeddedServer | None = None
        self._task: asyncio.Task[None] | None = None
        self.app = Starlette(
            routes=[
                Route("/metrics", self._metrics, methods=["GET"]),
                Route("/health", self._health_endpoint, methods=["GET"]),
                Route("/ready", self._ready_endpoint, methods=["GET"]),
                *routes,  # a service's own endpoints beside its probes (the HTTP query API)
            ]
        )

    @property
    def scheme(self) -> str:
        return "https" if self._tls is not None else "http"

    @property
    def port(self) -> int:
        """The bound port once started (the real one when 0 was asked), else the asked one."""
        return self._port

    async def start(self, timeout: float = 10.0) -> None:
        """Listen and serve; return once the server accepts connections.

        Raises ProbeError when the address cannot be bound, or the server fails or does
        not start within `timeout` seconds; RuntimeError when already started.
        """
        if self._task is not None:
            raise RuntimeError("ProbeServer.start() called twice")
        tls = self._tls
        if tls is not None:
            tls.check()
        sock = self._bind()
        config = uvicorn.Config(
            self.app,
            log_config=None,
            access_log=False,
            lifespan="off",
            http=TLSScopeH11Protocol,  # h11, plus the client certificate in the scope
            ws="none",
            workers=1,
            proxy_headers=False,
            server_header=False,
            timeout_graceful_shutdown=5,
            ssl_certfile=tls.cert if tls else None,
            ssl_keyfile=tls.key if tls else None,
            ssl_ca_certs=tls.client_ca if tls else None,
            ssl_cert_reqs=ssl.CERT_OPTIONAL if tls else ssl.CERT_NONE,  # optional: a browser with a token gets in too
        )
        server = self._server = _EmbeddedServer(config)
        task = self._task = asyncio.create_task(self._serve(server, sock), name=f"probes:{self._port}")
        task.add_done_callback(self._report_crash)
        listening = asyncio.create_task(server.listening.wait())
        try:
            await asyncio.wait({listening, task}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            listening.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listening
        if not server.listening.is_set():
            self._server = self._task = None
            if task.done() and not task.cancelled():
                cause = task.exception()
                if isinstance(cause, ProbeError):
                    raise cause
                raise ProbeError(f"the probe server on {self._host}:{self._port} stopped while starting") from cause
            server.should_exit = server.force_exit = True
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            raise ProbeError(f"the probe server on {self._host}:{self._port} did not start within {timeout}s")
        log.info("serving /metrics, /health and /ready on %s://%s:%d", self.scheme, self._host, self._port)

    async def stop(self) -> None:
        """Stop serving and release the port; waits for responses in flight. Idempotent."""
        server, task = self._server, self._task
        self._server = self._task = None
        if server is None or task is None:
            return
        server.should_exit = True
        done, _ = await asyncio.wait({task}, timeout=10)
        if not done:
            server.force_exit = True
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    def _report_crash(self, task: asyncio.Task[None]) -> None:
        started = self._server is not None and self._server.listening.is_set()
        if self._task is task and started and not task.cancelled() and task.exception() is not None:
            log.error("the probe server stopped unexpectedly", exc_info=task.exception())

    async def __aenter__(self) -> ProbeServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def _bind(self) -> socket.socket:
        try:
            infos = socket.getaddrinfo(self._host, self._port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
            family, kind, proto, _, address = infos[0]
            sock = socket.socket(family, kind, proto)
        except OSError as exc:
            raise ProbeError(f"cannot listen on {self._host}:{self._port}: {exc}; check the host name") from exc
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(address)
        except OSError as exc:
            sock.close()
            raise ProbeError(
                f"cannot listen on {self._host}:{self._port} for /metrics and probes: {exc.strerror or exc}; "
                "choose another port (0 picks a free one) or stop the process using it"
            ) from exc
        self._port = sock.getsockname()[1]
        return sock

    @staticmethod
    async def _serve(server: _EmbeddedServer, sock: socket.socket) -> None:
        try:
            await server.serve(sockets=[sock])
        except SystemExit as exc:  # uvicorn exits on startup failures; never end the host's loop
            raise ProbeError(f"the probe server failed to start (uvicorn exit status {exc.code})") from exc
        finally:
            sock.close()

    async def _metrics(self, request: Request) -> Response:
        encode, content_type = choose_encoder(request.headers.get("accept", ""))  # text or OpenMetrics
        ready = await self._probe("ready", self._ready)
        return Response(encode(_WithReadiness(self._registry, ready)), headers={"content-type": content_type})

    async def _health_endpoint(self, request: Request) -> Response:
        healthy = self._health is None or await self._probe("health", self._health)
        return JSONResponse({"status": "ok" if healthy else "unhealthy"}, status_code=200 if healthy else 503)

    async def _ready_endpoint(self, request: Request) -> Response:
        ready = await self._probe("ready", self._ready)
        return JSONResponse({"ready": ready}, status_code=200 if ready else 503)

    @staticmethod
    async def _probe(name: str, check: Check) -> bool:
        try:
            return await _call(check)
        except Exception:
            log.warning("the %s check raised; answering 503", name, exc_info=True)
            return False
