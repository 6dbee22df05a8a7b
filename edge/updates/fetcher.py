"""python-tuf's fetcher over the device's own NATS connection: a metadata file is a key of the tuf bucket.

python-tuf's Updater is synchronous and runs on a worker thread (edge.updates.trust); each
file it asks for is read on the agent's event loop, which owns the connection, by a Direct
Get of the key's last message ($JS.API.DIRECT.GET.KV_tuf.$KV.tuf.<key>): the one
JetStream request a device may make of that bucket (mahavishnu.control.permissions).
A missing or deleted key answers as HTTP's 404 would, which is how python-tuf learns that
the newest root is the one it has.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

from nats.aio.client import Client
from nats.errors import Error as NatsError
from tuf.api.exceptions import DownloadError, DownloadHTTPError
from tuf.ngclient import FetcherInterface

from core.updates.naming import METADATA_BUCKET, METADATA_STREAM

BASE_URL = f"nats://{METADATA_BUCKET}/"  # what the Updater prefixes; only the key after it matters
REQUEST_TIMEOUT_S = 5.0
_GONE = {"DEL", "PURGE"}  # a KV key's delete and purge markers: no file


async def read_key(nc: Client, key: str, *, timeout: float = REQUEST_TIMEOUT_S) -> bytes | None:
    """The tuf bucket's value at `key`, or None when there is none; nats-py's errors as they come."""
    reply = await nc.request(f"$JS.API.DIRECT.GET.{METADATA_STREAM}.$KV.{METADATA_BUCKET}.{key}", b"", timeout=timeout)
    headers = reply.headers or {}
    status = headers.get("Status")
    if status == "404":
        return None
    if status is not None:
        raise DownloadError(f"the tuf bucket answered {status} {headers.get('Description', '')} for {key}".strip())
    if headers.get("KV-Operation") in _GONE:
        return None
    return reply.data


class BucketFetcher(FetcherInterface):
    """Reads `nats://tuf/<key>` from the tuf bucket through `nc`, on `loop` (the loop that owns `nc`)."""

    def __init__(self, nc: Client, loop: asyncio.AbstractEventLoop) -> None:
        self._nc = nc
        self._loop = loop

    def _fetch(self, url: str) -> Iterator[bytes]:
        if not url.startswith(BASE_URL):
            raise DownloadError(f"not a tuf bucket URL: {url}")
        key = url[len(BASE_URL) :]
        future = asyncio.run_coroutine_threadsafe(read_key(self._nc, key), self._loop)
        try:
            data = future.result(timeout=REQUEST_TIMEOUT_S + 1)
        except (NatsError, TimeoutError) as exc:
            future.cancel()
            raise DownloadError(f"the tuf bucket did not answer for {key}: {type(exc).__name__}") from exc
        if data is None:
            raise DownloadHTTPError(f"{key} is not in the tuf bucket", 404)
        return iter((data,))
