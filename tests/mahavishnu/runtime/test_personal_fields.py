"""A device's personal fields through every door, for an operator of each role, on a real mesh.

The device is enrolled by the control side with an owner and a location (sealed in the
event, opened by the devices read model with the mesh's data keys); operators of each
role ask through the NATS door (`mesh.q.devices.*`, their own certificates, the OPS
account's import) and the HTTPS door as `up` builds it (their client certificates). What
each sees is projections.personal's table; nothing a person can export (the audit
trail) holds the values.
"""

from __future__ import annotations

import json
import secrets
import ssl
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from nats.aio.client import Client

from core import subjects
from core.config import HttpSettings
from core.store import EventStore, Identity, connect
from mahavishnu.control import devices, operators
from mahavishnu.runtime.up import http_api_server
from projections.authz import ROLES
from projections.catalog import CATALOG, build
from projections.queries import ReadModels
from projections.query_service import start_query_service
from projections.runner import ProjectionRunner
from tests.harness import Mesh
from tests.waiting import wait_until

KEY = secrets.token_hex(32)
OWNER, LOCATION = "Grace Hopper", "Room 404, Arlington"
# What each role reads of (owner, location): a device with both, and one with neither. `...`: no such key.
SEES: dict[str, tuple[tuple[object, object], tuple[object, object]]] = {
    "admin": ((OWNER, LOCATION), (None, None)),
    "operator": ((OWNER, LOCATION), (None, None)),
    "auditor": (("sealed", "sealed"), (None, None)),
    "viewer": ((..., ...), (..., ...)),
}


@dataclass(frozen=True)
class Person:
    identity: str
    cert: Path
    key: Path
    ca: Path


def reloads(mesh: Mesh) -> int:
    return sum("Reloaded server configuration" in line for line in mesh.server.recent)


@pytest.fixture(scope="module")
def people(mesh: Mesh, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Person]:
    """An operator of each role, accepted by the server."""
    folder = tmp_path_factory.mktemp("personal-people")
    found = {}
    for role in ROLES:
        identity = f"pf-{role}"
        before = reloads(mesh)
        issued = operators.add(mesh.home, mesh.settings, identity, role, out_dir=folder / identity)
        wait_until(lambda b=before: reloads(mesh) > b, timeout=10, what=f"the reload for {identity}")
        assert issued.key_path is not None
        found[role] = Person(identity, issued.cert_path, issued.key_path, issued.ca_path)
    return found


@dataclass(frozen=True)
class Doors:
    http: str  # the HTTPS door's base URL
    personal: str  # a device enrolled with an owner and a location
    plain: str  # one enrolled with neither


@pytest.fixture
async def doors(mesh: Mesh, store: EventStore, nc: Client, tmp_path: Path) -> AsyncIterator[Doors]:
    batch = uuid.uuid4().hex[:6]
    personal, plain = f"pf-{batch}-a", f"pf-{batch}-b"
    await devices.enroll(
        mesh.home,
        mesh.settings,
        store,
        personal,
        out_dir=tmp_path / personal,
        personal={"owner": OWNER, "location": LOCATION},
    )
    await devices.enroll(mesh.home, mesh.settings, store, plain, out_dir=tmp_path / plain)
    models = tmp_path / "models"
    models.mkdir()
    for name in CATALOG:  # built as up builds them: the devices model opens sealed fields with the data keys
        runner = ProjectionRunner(build(name, mesh.home.data_keys), store, directory=models, key=KEY)
        await runner.open()
        await runner.catch_up()
        await runner.close()
    read_models = ReadModels(models, KEY, store)
    service = await start_query_service(
        nc, read_models, version="0.1.0", resolve=operators.resolver(mesh.home), audit=store.audit
    )
    settings = msgspec.structs.replace(mesh.settings, http=HttpSettings(port=0, tls=True))
    server = http_api_server(mesh.home, settings, read_models, store.audit, ready=bool)
    await server.start()
    try:
        yield Doors(f"https://127.0.0.1:{server.port}", personal, plain)
    finally:
        await server.stop()
        await service.stop()


def personal_of(device: dict[str, Any]) -> tuple[object, object]:
    return device.get("owner", ...), device.get("location", ...)


async def ask_nats(mesh: Mesh, person: Person, query: str, body: dict[str, Any]) -> dict[str, Any]:
    client = await connect(
        Identity(mesh.identity.url, person.ca, person.cert, person.key),
        name=person.identity,
        reconnect=False,
        inbox_prefix=subjects.inbox_prefix(person.identity),
    )
    try:
        reply = await client.request(f"mesh.q.{query}", json.dumps(body).encode(), timeout=5)
    finally:
        await client.close()
    assert "Nats-Service-Error" not in (reply.headers or {}), reply.headers
    answer: dict[str, Any] = json.loads(reply.data)
    return answer


async def ask_http(mesh: Mesh, person: Person, url: str) -> Any:
    context = ssl.create_default_context(cafile=mesh.home.ca_dir / "ca.pem")
    context.load_cert_chain(person.cert, person.key)
    async with httpx.AsyncClient(verify=context) as client:
        answer = await client.get(url)
    assert answer.status_code == 200, answer.text
    return answer.json()


@pytest.mark.parametrize("role", ROLES)
async def test_the_nats_door_shows_each_role_the_personal_fields_it_may_see(
    doors: Doors, mesh: Mesh, people: dict[str, Person], role: str
) -> None:
    person, (with_both, with_neither) = people[role], SEES[role]
    for device, expected in ((doors.personal, with_both), (doors.plain, with_neither)):
        one = await ask_nats(mesh, person, "devices.get", {"id": device})
        assert (one["device_id"], personal_of(one)) == (device, expected)
    prefix = doors.personal.removesuffix("-a")
    listed = await ask_nats(mesh, person, "devices.list", {"after": prefix, "limit": 2})
    assert [(d["device_id"], personal_of(d)) for d in listed["devices"]] == [
        (doors.personal, with_both),
        (doors.plain, with_neither),
    ]


@pytest.mark.parametrize("role", ROLES)
async def test_the_https_door_shows_each_role_the_personal_fields_it_may_see(
    doors: Doors, mesh: Mesh, people: dict[str, Person], role: str
) -> None:
    person, (with_both, with_neither) = people[role], SEES[role]
    for device, expected in ((doors.personal, with_both), (doors.plain, with_neither)):
        one = await ask_http(mesh, person, f"{doors.http}/api/devices/{device}")
        assert (one["device_id"], personal_of(one)) == (device, expected)
    prefix = doors.personal.removesuffix("-a")
    listed = await ask_http(mesh, person, f"{doors.http}/api/devices?after={prefix}&limit=2")
    assert [(d["device_id"], personal_of(d)) for d in listed["devices"]] == [
        (doors.personal, with_both),
        (doors.plain, with_neither),
    ]
    if role == "viewer":  # whatever it may read of the device, not a byte of the values
        whole = json.dumps(await ask_http(mesh, person, f"{doors.http}/api/devices/{doors.personal}"))
        assert OWNER not in whole and LOCATION not in whole and "sealed" not in whole


async def test_the_audit_trail_names_the_personal_fields_never_their_values(
    doors: Doors, mesh: Mesh, store: EventStore, people: dict[str, Person]
) -> None:
    """What `audit export` writes is the AUDIT stream; what an auditor searches is its read model."""
    exported = [stored.data async for stored in store.read("mesh.audit.>")]
    assert exported and not any(OWNER.encode() in data or LOCATION.encode() in data for data in exported)
    found = await ask_http(
        mesh, people["auditor"], f"{doors.http}/api/audit?device={doors.personal}&action=device.enroll"
    )
    assert [e["details"]["personal"] for e in found["entries"]] == [["location", "owner"]]
