"""The devices read model's sealed fields: opened with the key, NULL without it, dropped by an erasure."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

from core.events import DeviceEnrolled, DeviceErased, Event
from core.sealing import device_subject
from mahavishnu.control.devices import sealed_fields
from projections.catalog import CATALOG, build
from projections.devices import Devices
from projections.keystore import FileKeyStore

PERSONAL = {"owner": "Ada Lovelace", "location": "12 Analytical Street"}


def rows(model: Devices, events: list[Event]) -> list[tuple[object, ...]]:
    db = sqlite3.connect(":memory:")
    for statement in model.schema:
        db.execute(statement)
    for seq, event in enumerate(events, 1):
        for sql, params in model.apply(event, seq):
            db.execute(sql, params)
    found = [tuple(row) for row in db.execute("SELECT device_id, owner, location, erased_at FROM devices")]
    db.close()
    return found


def enrolled(keys: FileKeyStore, device_id: str = "dev-a") -> DeviceEnrolled:
    key = keys.create(device_subject(device_id))
    return DeviceEnrolled(
        device_id=device_id,
        serial="1f",
        fingerprint_sha256="ab" * 32,
        not_after=datetime(2030, 1, 1, tzinfo=UTC),
        **sealed_fields(key, device_id, PERSONAL),
    )


def test_the_fields_are_opened_with_the_key_and_null_without_it(tmp_path: Path) -> None:
    keys = FileKeyStore(tmp_path / "keys")
    event = enrolled(keys)
    assert rows(Devices(keys), [event]) == [("dev-a", PERSONAL["owner"], PERSONAL["location"], None)]
    assert rows(Devices(), [event]) == [("dev-a", None, None, None)]  # no key store: nothing to open with
    keys.destroy(device_subject("dev-a"))
    assert rows(Devices(keys), [event]) == [("dev-a", None, None, None)]  # what a rebuild after erasure sees


def test_the_erasure_event_drops_the_fields_and_a_rebuild_ends_the_same(tmp_path: Path) -> None:
    keys = FileKeyStore(tmp_path / "keys")
    events: list[Event] = [enrolled(keys), enrolled(keys, "dev-b")]
    erased = DeviceErased(device_id="dev-a", key_id="k", fields=["owner", "location"])
    live = rows(Devices(keys), [*events, erased])  # the key was there when the enrolment was applied
    keys.destroy(device_subject("dev-a"))
    rebuilt = rows(Devices(keys), [*events, erased])
    at = erased.occurred_at.isoformat()
    assert live == rebuilt == [("dev-a", None, None, at), ("dev-b", PERSONAL["owner"], PERSONAL["location"], None)]


def test_whatever_applies_events_gets_the_keys_from_the_catalog(tmp_path: Path) -> None:
    keys = FileKeyStore(tmp_path / "keys")
    devices = build("devices", keys)
    assert isinstance(devices, Devices) and devices.keys is keys
    assert {name: type(build(name, keys)) for name in CATALOG} == CATALOG
