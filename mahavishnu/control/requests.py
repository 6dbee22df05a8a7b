"""Requests to a running `up` from the command line, on control-only subjects (mesh.ctl.>).

Devices and operators have no permission to publish there; only the control identity does.

    mesh.ctl.projections.rebuild   {"name": "devices"}  ->  progress {"done", "total"} ..., then
                                                            {"applied": N} or {"error": "..."}
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from nats.aio.client import Client
from nats.aio.msg import Msg

from core.errors import MahavishnuError
from projections.service import ProjectionService

REBUILD = "mesh.ctl.projections.rebuild"


async def serve(nc: Client, service: ProjectionService) -> Any:
    """Answer rebuild requests with progress messages and a final one; returns the subscription."""

    async def on_request(msg: Msg) -> None:
        async def say(document: dict[str, Any]) -> None:
            if msg.reply:
                await nc.publish(msg.reply, json.dumps(document).encode())

        try:
            name = str(json.loads(msg.data or b"{}")["name"])
        except (ValueError, KeyError, TypeError):
            await say({"error": 'send {"name": "<read model>"}'})
            return
        sent: list[asyncio.Task[None]] = []

        def progress(done: int, total: int) -> None:
            sent.append(asyncio.get_running_loop().create_task(say({"done": done, "total": total})))

        try:
            applied = await service.rebuild(name, progress)
        except MahavishnuError as exc:
            await asyncio.gather(*sent)
            await say({"error": str(exc)})
            return
        await asyncio.gather(*sent)  # every progress message goes out before the final one
        await say({"applied": applied})

    running: set[asyncio.Task[None]] = set()

    async def dispatch(msg: Msg) -> None:
        task = asyncio.create_task(on_request(msg))  # a long rebuild must not hold up other requests
        running.add(task)
        task.add_done_callback(running.discard)

    return await nc.subscribe(REBUILD, cb=dispatch)


async def request_rebuild(nc: Client, name: str, progress: Callable[[int, int], None]) -> int:
    """Ask the running `up` to rebuild `name`; returns the events applied. MahavishnuError on failure."""
    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox)
    try:
        await nc.publish(REBUILD, json.dumps({"name": name}).encode(), reply=inbox)
        while True:
            try:
                msg = await sub.next_msg(timeout=60)
            except Exception as exc:
                raise MahavishnuError(f"the running mesh did not answer the rebuild of {name} in time") from exc
            document = json.loads(msg.data)
            if "error" in document:
                raise MahavishnuError(document["error"])
            if "applied" in document:
                return int(document["applied"])
            progress(int(document["done"]), int(document["total"]))
    finally:
        await sub.unsubscribe()
