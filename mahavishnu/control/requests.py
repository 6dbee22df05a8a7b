"""Requests to a running `up` from the command line, on control-only subjects (mesh.ctl.>), and its queries.

Devices and operators have no permission to publish on mesh.ctl.>; only the control identity does.

    mesh.ctl.projections.rebuild   {"name": "devices"}  ->  progress {"done", "total"} ..., then
                                                            {"applied": N} or {"error": "..."}
    mesh.ctl.projections.wait      {"name": "commands", "positions": {"<source>": seq, ...}, "timeout_s": 10}
                                   ->  {"positions": {...}} once applied, or {"error": "..."}

`query` asks the running mesh's query service (mesh.q.<query>) as the control identity,
which it serves as an admin (projections.authz).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg

from core import subjects
from core.errors import MahavishnuError, ServiceRefusal

if TYPE_CHECKING:
    from projections.service import ProjectionService

REBUILD = "mesh.ctl.projections.rebuild"
WAIT = "mesh.ctl.projections.wait"
ANSWER_S = 10.0  # how long a query may take to be answered
MARGIN_S = 5.0  # beyond a wait's own timeout, for the answer to travel


class RequestError(ServiceRefusal):
    """The running mesh did not answer a request, or answered with an error; `status` is HTTP-like."""


async def serve(nc: Client, service: ProjectionService) -> list[Any]:
    """Answer rebuild and wait requests; returns the subscriptions."""
    return [await _serve_rebuild(nc, service), await _serve_wait(nc, service)]


async def _serve_rebuild(nc: Client, service: ProjectionService) -> Any:
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


async def _serve_wait(nc: Client, service: ProjectionService) -> Any:
    """Answer each wait request once its positions are applied, or with an error after its timeout."""

    async def on_request(msg: Msg) -> None:
        try:
            request = json.loads(msg.data or b"{}")
            name, timeout = str(request["name"]), float(request.get("timeout_s", ANSWER_S))
            positions = {str(source): int(seq) for source, seq in dict(request["positions"]).items()}
        except (ValueError, KeyError, TypeError):
            answer: dict[str, Any] = {
                "error": 'send {"name": "<read model>", "positions": {"<source>": seq}}',
                "code": 400,
            }
        else:
            try:
                answer = {"positions": await service.wait(name, positions, timeout)}
            except MahavishnuError as exc:
                answer = {"error": str(exc), "code": 400}
            except TimeoutError:
                answer = {"error": f"the {name} read model did not apply {positions} within {timeout:g} s", "code": 504}
        if msg.reply:
            await nc.publish(msg.reply, json.dumps(answer).encode())

    running: set[asyncio.Task[None]] = set()

    async def dispatch(msg: Msg) -> None:
        task = asyncio.create_task(on_request(msg))  # each waits on its own: one must not hold up the next
        running.add(task)
        task.add_done_callback(running.discard)

    return await nc.subscribe(WAIT, cb=dispatch)


async def request_applied(nc: Client, name: str, positions: dict[str, int], *, timeout_s: float) -> dict[str, int]:
    """Wait until the running `up`'s read model `name` has applied `positions` (source -> stream sequence).

    Returns its positions then. RequestError when no `up` runs (503), when it did not get
    there within `timeout_s` (504), or when it refused the request (400).
    """
    body = json.dumps({"name": name, "positions": positions, "timeout_s": timeout_s}).encode()
    try:
        reply = await nc.request(WAIT, body, timeout=timeout_s + MARGIN_S)
    except nats.errors.NoRespondersError:
        raise RequestError(503, "the mesh is not running here: start it with `mahavishnu up`") from None
    except (nats.errors.TimeoutError, TimeoutError):
        raise RequestError(504, f"the running mesh did not answer within {timeout_s + MARGIN_S:g} s") from None
    document = json.loads(reply.data)
    if "error" in document:
        raise RequestError(int(document.get("code", 400)), f"{document['error']}: see `mahavishnu projections status`")
    return {str(source): int(seq) for source, seq in document["positions"].items()}


async def query(nc: Client, name: str, request: dict[str, Any]) -> Any:
    """The answer of the running mesh's query `name` (mesh.q.<name>) to `request`, decoded.

    RequestError with the query's own code and message when it answers with an error (404:
    no such row), 503 when no query service answers, 504 when it does not answer in time.
    """
    try:
        reply = await nc.request(f"{subjects.QUERY_PREFIX}.{name}", json.dumps(request).encode(), timeout=ANSWER_S)
    except nats.errors.NoRespondersError:
        raise RequestError(503, "no query service answers: is `mahavishnu up` running?") from None
    except (nats.errors.TimeoutError, TimeoutError):
        raise RequestError(504, f"the query service did not answer {name} within {ANSWER_S:g} s") from None
    headers = reply.headers or {}
    if "Nats-Service-Error-Code" in headers:
        code = headers["Nats-Service-Error-Code"]
        raise RequestError(int(code) if code.isdigit() else 500, headers.get("Nats-Service-Error", "refused"))
    return json.loads(reply.data)
