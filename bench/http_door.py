"""The server of bench/http_query.py: the mesh's HTTP query door with one raw Starlette endpoint beside it.

    python bench/http_door.py HOME NATS_PORT HTTP_PORT

Serves exactly what `mahavishnu up` serves on its HTTP door (projections.http_api's
routes, bearer tokens and operator certificates, HTTPS with the mesh's server
certificate, the process's audit trail and Admission), connected to the running mesh as
the control identity, and beside it `GET /bench/raw`: a plain Starlette endpoint that
answers the bytes of the audit search it is compared with, computed once at start. The
two differ only by what a query costs us: authentication, admission, the audit record
and the read. Prints "ready" once serving and stops when its stdin closes.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from core.config import load_config
from core.metrics import new_registry
from core.probes import ProbeServer, ServerTLS
from core.store import EventStore, connect
from mahavishnu.control import operators, tokens
from mahavishnu.runtime.home import Home
from mahavishnu.runtime.streams import streams_of
from projections import http_api, http_auth
from projections.admission import Admission
from projections.audit_queries import AuditSearch, audit_search
from projections.database import database_key
from projections.queries import ReadModels


async def serve(root: Path, nats_port: int, http_port: int, device: str) -> None:
    home = Home(root)
    settings = load_config(None, env={})
    nc = await connect(home.control_identity(settings, nats_port), name="bench-http-door", reconnect=False)
    store = EventStore(nc, streams_of(settings))
    models = ReadModels(home.readmodels_dir, database_key(home.root, os.environ), store)
    page = msgspec.json.encode(await audit_search(models, AuditSearch(device=device)))

    async def raw(request: Request) -> Response:
        return Response(page, media_type="application/json")

    authenticate = http_auth.authenticator(
        by_token=tokens.authenticator(home), by_certificate=operators.certificate_resolver(home)
    )
    routes = http_api.routes(
        models, authenticate=authenticate, audit=store.audit, admission=Admission(), client_certificates=True
    )
    tls = ServerTLS(home.server_dir / "cert.pem", home.server_dir / "key.pem", client_ca=home.ca_dir / "ca.pem")
    server = ProbeServer(
        "127.0.0.1", http_port, new_registry(), ready=lambda: True, routes=[*routes, Route("/bench/raw", raw)], tls=tls
    )
    await server.start()
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until the benchmark closes our stdin
    await server.stop()
    await nc.close()


if __name__ == "__main__":
    import uvloop

    uvloop.run(serve(Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]))
