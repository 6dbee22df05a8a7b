"""`devices.list`: the fleet a bounded page at a time in id order, by presence, site, transport, tag and id prefix.

A fleet of 10,000 devices is too much for one answer (and for a dashboard to draw), so
the list answers at most `limit` devices (1..PAGE_MAX) after the cursor `after`, and
`next`: the last device id of the page when more match, else null. A caller pages with
`after=<next>` until `next` is null, and reaches every matching device exactly once
(devices enrolled meanwhile appear in the page their id falls in).

As audit.search does, SQLite builds the answer (json_object per device with its tags,
json_group_array over the page) and the doors hand it out as one msgspec.Raw document.
The statement fetches one device more than the page to know whether another page
follows. Each filter walks an index in device id order from the cursor (see the schema
in projections.devices); with a tag, the tag's index drives the page, so a rare tag and
a common one both cost the page, not the fleet.

Each device carries its personal fields as the caller's role may see them
(projections.personal): the page's statement is built for that role.

Presence is judged when asked: a device is online when it was last seen (a heartbeat,
telemetry or a report) within PRESENCE_WINDOW_S, three of the agent's default
heartbeat intervals, so one lost heartbeat does not make it read offline.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

import msgspec

from core.events import SEALED_DEVICE_FIELDS
from core.events.base import utc_now
from core.tags import TagError, parse_tag
from projections.devices import Transport
from projections.personal import SEALED_MARK, Sight, sight
from projections.reading import QueryError, ReadModels, read_rows

PAGE_MAX = 1000
PAGE_DEFAULT = 100
PRESENCE_WINDOW_S = 90.0  # three heartbeats of 30 s (edge.agent_config's default heartbeat_interval)

Presence = Literal["online", "offline"]
# A site's name is an identity (certs' rule; the projections import only core).
SiteName = Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$", description="an edge site's name")]


class DeviceList(msgspec.Struct, forbid_unknown_fields=True):
    limit: int = PAGE_DEFAULT
    after: str | None = None  # a cursor: only devices whose id sorts after it (a previous answer's `next`)
    presence: Presence | None = None
    site: SiteName | None = None
    transport: Transport | None = None
    tag: str | None = None  # "key=value" (core.tags)
    prefix: str | None = None  # only devices whose id starts with it: the dashboard's search


def presence_cutoff(now: datetime) -> str:
    """The oldest last_seen that still reads online at `now`, as last_seen is stored (pure)."""
    return (now - timedelta(seconds=PRESENCE_WINDOW_S)).isoformat()


_TAGS = "(SELECT json_group_object(key, value) FROM device_tags WHERE device_tags.device_id = d.device_id)"


def device_object(role: str | None) -> str:
    """A device as the list answers it to `role` (pure): its row's summary, presence at the time of
    asking, its personal fields as the role sees them, its tags."""
    personal = ""
    for field in SEALED_DEVICE_FIELDS:  # names from core.events, never from a request
        how = sight(role, field)
        if how is Sight.VALUE:
            personal += f"'{field}', d.{field}, "
        elif how is Sight.MARKED:
            personal += f"'{field}', iif(d.{field} IS NULL, NULL, '{SEALED_MARK}'), "
    return (
        "json_object('device_id', d.device_id, 'status', d.status, "
        "'presence', iif(d.last_seen >= :cutoff, 'online', 'offline'), 'last_seen', d.last_seen, "
        "'uptime_s', d.uptime_s, 'outbox', d.outbox, 'transport', d.transport, 'site', d.site, "
        f"{personal}'tags', json(coalesce({_TAGS}, '{{}}')))"
    )


def list_statement(request: DeviceList, now: datetime, role: str | None) -> tuple[str, dict[str, object]]:
    """The one statement of a page: (devices matching, at most limit + 1; last id in the page; the page as JSON) (pure).

    The page is the first `limit` of the `page` rows; aggregating them in id order makes
    the JSON array's order theirs (tests/projections/test_device_queries.py holds it to that).
    Each device shows `role` its personal fields as projections.personal says.
    TagError for a malformed `tag`.
    """
    params: dict[str, object] = {"after": request.after or "", "limit": request.limit, "cutoff": presence_cutoff(now)}
    conditions = []
    if request.tag is None:
        source, order = "devices d", "d.device_id"
    else:
        # The tag's index (key, value, device_id) drives the page, in device id order.
        source, order = "device_tags g JOIN devices d ON d.device_id = g.device_id", "g.device_id"
        params["tag_key"], params["tag_value"] = parse_tag(request.tag)
        conditions += ["g.key = :tag_key", "g.value = :tag_value"]
    conditions.append(f"{order} > :after")
    if request.prefix:
        # A range of the id index: every id is a subject token, all of whose characters sort
        # before DEL, so the ids that start with the prefix are exactly [prefix, prefix + DEL).
        conditions += [f"{order} >= :prefix", f"{order} < :prefix || char(127)"]
        params["prefix"] = request.prefix
    if request.presence == "online":
        conditions.append("d.last_seen >= :cutoff")
    elif request.presence == "offline":
        conditions.append("(d.last_seen IS NULL OR d.last_seen < :cutoff)")
    for field in ("site", "transport"):
        value = getattr(request, field)
        if value is not None:
            conditions.append(f"d.{field} = :{field}")
            params[field] = value
    sql = (
        f"WITH page AS (SELECT d.device_id AS device_id, {device_object(role)} AS device FROM {source}"
        f" WHERE {' AND '.join(conditions)} ORDER BY {order} LIMIT :limit + 1)"
        " SELECT (SELECT count(*) FROM page), max(device_id), json_group_array(json(device))"
        " FROM (SELECT * FROM page ORDER BY device_id LIMIT :limit)"
    )
    return sql, params


def next_cursor(found: int, last: str | None, limit: int) -> str | None:
    """Where the following page starts (pure): after this page's last device, if more matched than it holds."""
    return last if found > limit else None


async def devices_list(models: ReadModels, request: DeviceList) -> msgspec.Raw:
    """A page of devices in id order and the cursor to the next: {"devices": [...], "next": id | null}.

    Personal fields as `models.role` sees them (projections.personal)."""
    if not 1 <= request.limit <= PAGE_MAX:
        raise QueryError(400, f"bad request: limit must be 1..{PAGE_MAX}; page with `after` for more")
    try:
        sql, params = list_statement(request, utc_now(), models.role)
    except TagError as exc:
        raise QueryError(400, f"bad request: {exc}") from None
    [row] = await read_rows(models, "devices", sql, **params)
    found, last, devices = row.values()
    cursor = next_cursor(found, last, request.limit)
    return msgspec.Raw(b'{"devices":' + devices.encode() + b',"next":' + msgspec.json.encode(cursor) + b"}")


DEVICE_QUERIES: dict[str, tuple[type[Any], Any]] = {"devices.list": (DeviceList, devices_list)}
