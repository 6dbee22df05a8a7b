"""An object's info in the artifacts bucket, read by a Direct Get of its meta subject.

A device may not read streams through the JetStream API's message get, only by Direct
Get (mahavishnu.control.permissions.update_reads); the control side reads the same way,
and learns the meta message's stream sequence too, which its uploads use as the expected
last sequence of the subject (a concurrent upload of the same name then fails).
"""

from __future__ import annotations

from dataclasses import dataclass

from nats.aio.client import Client

from core.updates import objects
from core.updates.naming import ARTIFACTS_BUCKET, ARTIFACTS_STREAM
from edge.errors import EdgeError

_STATUS = "Status"
_NOT_FOUND = "404"


class BadObjectInfo(EdgeError):
    """The server answered the Direct Get with an error, or with something that is no object's info."""


@dataclass(frozen=True)
class Found:
    info: objects.ObjectInfo
    seq: int  # the meta message's stream sequence


async def read_info(nc: Client, name: str, *, timeout: float = 5.0) -> Found | None:
    """The object `name`'s last meta message (a removed object's too: `info.deleted`), or None if it never existed.

    BadObjectInfo when the server refuses or the message is not an object's info;
    nats' own errors (timeout, no responders) pass through for the caller's retry.
    """
    subject = objects.meta_subject(ARTIFACTS_BUCKET, name)
    msg = await nc.request(f"$JS.API.DIRECT.GET.{ARTIFACTS_STREAM}.{subject}", b"", timeout=timeout)
    headers = msg.headers or {}
    status = headers.get(_STATUS)
    if status == _NOT_FOUND:
        return None
    if status is not None:
        said = f"{status} {headers.get('Description', '')}".strip()
        raise BadObjectInfo(f"reading {name}'s info: the server answered {said}")
    try:
        return Found(objects.decode_info(msg.data), int(headers.get("Nats-Sequence", "0")))
    except ValueError as exc:
        raise BadObjectInfo(f"reading {name}'s info: {exc}") from None
