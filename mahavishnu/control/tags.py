"""Tagging devices: set and remove key=value labels, recorded as a DeviceTagged event and an audit record.

`tag` is the one way in, for `mahavishnu device tag`, for `device enroll --tag` (called
after the enrolment returns) and for whatever enrols devices later (claims): each
passes the tags it was given and who gave them. The rules of a tag are core.tags'.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from certs import validate_identity
from core import subjects
from core.errors import MahavishnuError
from core.events import DeviceTagged
from core.store import EventStore
from core.tags import tag_change

# The events that make a device known: enrolled with a certificate, or registered as an SSH host.
_KNOWN_BY = ("enrolled", "ssh")


class UntaggableDevice(MahavishnuError):
    """No device was enrolled or registered under this id; nothing was recorded."""


async def tag(
    store: EventStore,
    device_id: str,
    set_tags: Mapping[str, str],
    remove: Iterable[str] = (),
    *,
    actor: str,
) -> DeviceTagged:
    """Set `set_tags` on the device and remove the keys in `remove`; returns the recorded event.

    Before anything is recorded: TagError when a tag breaks core.tags' rules or the change
    is empty, InvalidIdError for an id no device can have, UntaggableDevice when the mesh
    never enrolled or registered the device. StoreError when the streams do not take it.
    `actor` is who asked, recorded in the event and the audit trail.
    """
    tags, removed = tag_change(set_tags, remove)
    validate_identity(device_id)
    for what in _KNOWN_BY:
        if await store.last_subject_sequence(subjects.device_event(device_id, what)):
            break
    else:
        raise UntaggableDevice(
            f"no device {device_id!r} to tag: enrol it first (see `mahavishnu device list`); nothing was recorded"
        )
    event = DeviceTagged(device_id=device_id, tags=tags, removed=removed, actor=actor)
    await store.append(event)
    await store.audit.record(
        actor=actor,
        category="identity",
        action="device.tag",
        target=device_id,
        details={"set": tags, "removed": removed},
    )
    return event
