"""Erasing a device's personal data by crypto-shredding: delete its data key, record that it was done.

The events that carry the device's sealed fields (core.events.SEALED_DEVICE_FIELDS) stay
in the streams, which are append-only history; without the key they are noise there, in
every backup made without --include-keys and in every read model rebuilt from them. The
live devices read model drops the fields when it applies the DeviceErased event.

The order is chosen for a crash at any point: the key goes first (the act that matters),
then the DeviceErased event, then the audit entry. Run again after a failure, an erasure
whose key is gone but which was not recorded records it; one already recorded says so
and changes nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from certs import validate_identity
from core import subjects
from core.errors import MahavishnuError, StoreError
from core.events import SEALED_DEVICE_FIELDS, DeviceErased
from core.sealing import device_subject
from core.store import EventStore
from mahavishnu.control.devices import devices
from mahavishnu.runtime.home import Home

log = logging.getLogger("mahavishnu.erasure")


class UnknownDevice(MahavishnuError):
    """There is no such device to erase; nothing was changed."""


class ErasureNotRecorded(MahavishnuError):
    """The key is destroyed but the erasure is not in the streams yet; running the command again records it."""


@dataclass(frozen=True)
class Erasure:
    device_id: str
    key_id: str  # the destroyed key's id; "" when there was no key to destroy
    already: bool  # erased before: nothing was changed now
    at: datetime


def require_known(home: Home, device_id: str) -> None:
    """UnknownDevice unless the CA has ever issued `device_id` a device certificate (live or revoked)."""
    validate_identity(device_id)
    if device_id not in devices(home):
        raise UnknownDevice(f"no device {device_id!r} to erase: see `mahavishnu device list`; nothing was changed")


async def erase(home: Home, store: EventStore, device_id: str, *, operator: str) -> Erasure:
    """Destroy the device's data key, then record DeviceErased and an audit entry naming `operator`.

    UnknownDevice for a device the mesh never enrolled; ErasureNotRecorded when the key is
    gone but the streams did not take the record (run it again). Erasing an erased device
    returns the earlier erasure with `already` set.
    """
    require_known(home, device_id)
    subject = device_subject(device_id)
    earlier = await store.last_event(subjects.device_event(device_id, "erased"))
    if home.data_keys.get(subject) is None and isinstance(earlier, DeviceErased):
        return Erasure(device_id, earlier.key_id, already=True, at=earlier.occurred_at)
    key_id = home.data_keys.destroy(subject) or ""
    log.info("device data key destroyed", extra={"device": device_id, "key_id": key_id, "operator": operator})
    fields = list(SEALED_DEVICE_FIELDS)
    try:
        event = DeviceErased(device_id=device_id, key_id=key_id, fields=fields, actor="control")
        await store.append(event)
        await store.audit.record(
            actor="control",
            category="privacy",
            action="device.erase",
            target=device_id,
            details={"key_id": key_id, "fields": fields, "operator": operator},
        )
    except StoreError as exc:
        raise ErasureNotRecorded(
            f"the data key of {device_id} is destroyed, but the erasure could not be recorded ({exc}): "
            f"run `mahavishnu erase device {device_id} --yes` again to record it"
        ) from exc
    return Erasure(device_id, key_id, already=False, at=event.occurred_at)
