"""`mahavishnu events read SUBJECT`: stored events as JSON lines, for people and for other tools."""

from __future__ import annotations

import argparse
import contextlib
import json
from collections.abc import Callable

from core.config import Settings
from core.store import EventStore, Identity, connect
from mahavishnu.cli.arguments import positive
from mahavishnu.runtime.home import Home
from mahavishnu.runtime.streams import streams_of


def add(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="events_command", required=True, metavar="ACTION")
    read = actions.add_parser("read", help="print stored events as JSON lines")
    read.add_argument("subject", help="subject filter, e.g. 'mesh.evt.>' or 'mesh.evt.device.dev-a.>'")
    read.add_argument("--from", dest="from_seq", type=positive, default=1, help="first stream sequence")
    read.add_argument("--limit", type=positive, default=0, help="stop after this many")
    read.set_defaults(handler=_read)


async def _read(home: Home, settings: Settings, args: argparse.Namespace) -> int:
    identity = home.control_identity(settings)
    return await read_events(identity, settings, args.subject, args.from_seq, args.limit, out=print)


async def read_events(
    identity: Identity, settings: Settings, subject: str, from_seq: int, limit: int, out: Callable[[str], None]
) -> int:
    """Print stored events as JSON lines: {"seq", "subject", "event"} or {"seq", "subject", "error"}."""
    nc = await connect(identity, name="mahavishnu-events", reconnect=False)
    try:
        store = EventStore(nc, streams_of(settings))
        shown = 0
        async with contextlib.aclosing(store.read(subject, from_seq)) as stream:
            async for stored in stream:
                body = stored.data.decode("utf-8", "replace")
                document = {"seq": stored.seq, "subject": stored.subject}
                if stored.event is not None:
                    line = json.dumps(document)[:-1] + f', "event": {body}}}'
                else:
                    line = json.dumps({**document, "error": stored.error})
                out(line)
                shown += 1
                if limit and shown >= limit:
                    break
        return 0
    finally:
        await nc.close()
