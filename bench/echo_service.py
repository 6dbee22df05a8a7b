"""The baseline of bench/query.py: a raw nats-py micro service with one endpoint that answers with the request.

    python bench/echo_service.py HOME PORT SUBJECT

Runs in its own process, as `mahavishnu up` does, connected as the control identity (the
MESH account), so an operator reaches SUBJECT through the same `mesh.q.>` service import
as the queries. Prints "ready" once the endpoint is registered and stops when its stdin
closes.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from nats.micro import add_service
from nats.micro.request import Request

from core.config import load_config
from core.store import connect
from mahavishnu.runtime.home import Home


async def serve(home: Path, port: int, subject: str) -> None:
    settings = load_config(None, env={})
    nc = await connect(Home(home).control_identity(settings, port), name="bench-echo", reconnect=False)

    async def echo(request: Request) -> None:
        await request.respond(request.data)

    service = await add_service(nc, name="bench-echo", version="1.0.0", description="echo, the query bench's baseline")
    await service.add_endpoint(name="echo", subject=subject, handler=echo)
    print("ready", flush=True)
    # Stop when the benchmark closes our stdin (or dies): read until end of file off the loop.
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await service.stop()
    await nc.close()


if __name__ == "__main__":
    import uvloop

    uvloop.run(serve(Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]))
