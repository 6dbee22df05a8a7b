"""Tagging devices from the control side, on a real server: the event, the audit record, and what is refused."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from certs import InvalidIdError
from core.events import AuditRecorded, DeviceTagged, SshHostRegistered
from core.store import EventStore
from core.tags import TagError
from mahavishnu.control import devices, tags
from tests.harness import Mesh


async def recorded(store: EventStore, device_id: str) -> tuple[list[DeviceTagged], list[AuditRecorded]]:
    events = [s.event async for s in store.read(f"mesh.evt.device.{device_id}.tagged")]
    audit = [s.event async for s in store.read("mesh.audit.identity.>")]
    return (
        [e for e in events if isinstance(e, DeviceTagged)],
        [a for a in audit if isinstance(a, AuditRecorded) and a.action == "device.tag" and a.target == device_id],
    )


async def test_a_tag_change_is_an_event_and_an_audit_record(mesh: Mesh, store: EventStore, tmp_path: Path) -> None:
    device = f"dev-{uuid.uuid4().hex[:8]}"
    await devices.enroll(mesh.home, mesh.settings, store, device, out_dir=tmp_path / device)
    first = await tags.tag(store, device, {"rack": "r7", "env": "prod"}, actor="ops-ann")
    second = await tags.tag(store, device, {"rack": "r8"}, ["env"], actor="ops-bob")
    events, audit = await recorded(store, device)
    assert [(e.tags, e.removed, e.actor) for e in events] == [
        ({"env": "prod", "rack": "r7"}, [], "ops-ann"),
        ({"rack": "r8"}, ["env"], "ops-bob"),
    ]
    assert [e.event_id for e in events] == [first.event_id, second.event_id]
    assert [(a.actor, a.category, a.details) for a in audit] == [
        ("ops-ann", "identity", {"set": {"env": "prod", "rack": "r7"}, "removed": []}),
        ("ops-bob", "identity", {"set": {"rack": "r8"}, "removed": ["env"]}),
    ]


async def test_an_ssh_host_can_be_tagged(store: EventStore) -> None:
    host = f"host-{uuid.uuid4().hex[:8]}"
    await store.append(
        SshHostRegistered(
            device_id=host, host="10.0.0.7", user="ops", host_key="ssh-ed25519 AAAA", fingerprint_sha256="x"
        )
    )
    await tags.tag(store, host, {"role": "web"}, actor="control")
    events, _ = await recorded(store, host)
    assert [e.tags for e in events] == [{"role": "web"}]


@pytest.mark.parametrize(
    ("device", "set_tags", "remove", "error", "words"),
    [
        ("dev-never-enrolled", {"rack": "r1"}, [], tags.UntaggableDevice, "no device 'dev-never-enrolled' to tag"),
        ("Not An Id", {"rack": "r1"}, [], InvalidIdError, "invalid identity"),
        ("dev-never-enrolled", {"Rack": "r1"}, [], TagError, "tag key 'Rack'"),
        ("dev-never-enrolled", {}, [], TagError, "nothing to change"),
    ],
)
async def test_a_refused_change_records_nothing(
    store: EventStore, device: str, set_tags: dict[str, str], remove: list[str], error: type[Exception], words: str
) -> None:
    with pytest.raises(error) as refused:
        await tags.tag(store, device, set_tags, remove, actor="control")
    assert words in str(refused.value)
    if device == "dev-never-enrolled":
        assert await recorded(store, device) == ([], [])
