"""Reading what a live read model has not applied yet: batched direct gets, no consumer.

A read model that follows the streams asks, many times a second, for the few events
appended since its last round. Through a consumer (core.store.replay) each ask costs
the server a consumer created and deleted, under the stream's lock that appends need
too: measured under `bench/query.py`, those calls were most of nats-server's work and
held the audit trail's appends back. A batched direct get (nats-server 2.11+, streams
with `allow_direct`) answers the same question statelessly: up to `batch` messages on a
subject filter from a sequence on, then an end-of-batch status saying how many more
match. The replay stays the tool for history (rebuilds), where pipelined pulls win.
"""

from __future__ import annotations

import asyncio
import json

import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from core.errors import StoreError
from core.store.nats_errors import from_exception
from core.store.replay import RawMessage

_STATUS = "Status"
_END_OF_BATCH = "204"
_NOT_FOUND = "404"


async def read_after(
    nc: Client,
    js: JetStreamContext,
    stream: str,
    subject_filter: str,
    from_seq: int,
    *,
    batch: int,
    timeout: float,
) -> tuple[list[RawMessage], int]:
    """Up to `batch` messages on `subject_filter` from stream sequence `from_seq` on, in order, and how
    many more match after them. StoreError (or StoreUnavailable) when the stream does not answer.
    """
    found: list[RawMessage] = []
    more = 0
    done = asyncio.Event()
    failure: list[str] = []

    async def collect(msg: Msg) -> None:
        nonlocal more
        headers = msg.headers or {}
        status = headers.get(_STATUS)
        if status is None:
            found.append(RawMessage(stream, int(headers["Nats-Sequence"]), headers["Nats-Subject"], msg.data))
            return
        if status == _END_OF_BATCH:
            more = int(headers.get("Nats-Num-Pending", "0"))
        elif status != _NOT_FOUND:  # 404: nothing from that sequence on (yet)
            failure.append(f"{status} {headers.get('Description', '')}".strip())
        done.set()

    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox, cb=collect, pending_msgs_limit=-1, pending_bytes_limit=-1)
    request = {"seq": max(1, from_seq), "next_by_subj": subject_filter, "batch": batch}
    try:
        await nc.publish(f"{js._prefix}.DIRECT.GET.{stream}", json.dumps(request).encode(), reply=inbox)
        await asyncio.wait_for(done.wait(), timeout)
    except (TimeoutError, nats.errors.Error) as exc:
        raise from_exception(exc, doing=f"read {subject_filter} from {from_seq}") from exc
    finally:
        if not nc.is_closed:
            await sub.unsubscribe()
    if failure:
        raise StoreError(f"read {subject_filter} from {from_seq}: the server answered {failure[0]}")
    return found, more
