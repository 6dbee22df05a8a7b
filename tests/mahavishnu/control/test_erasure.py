"""Erasure by crypto-shredding, through the real CLI against a running mesh: enrol with personal fields,
erase, and nothing of them is readable any more in the stream, the read models (live and rebuilt) or a
backup made without keys; the erasure is audited; mistakes fail in one line and change nothing."""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path

import pytest

from core import subjects
from core.events import AuditRecorded, DeviceEnrolled, DeviceErased, Event
from core.sealing import DataKey, SealingError, device_subject, unseal
from core.store import EventStore, Identity, connect
from mahavishnu.control import devices, erasure
from projections import readers
from projections.database import connect_reader, database_key
from projections.keystore import FileKeyStore
from projections.queries import DeviceGet, ReadModels, devices_get
from tests.harness import Mesh
from tests.mahavishnu.cli_harness import Running, one_line_error, run, start_up, stop_up
from tests.waiting import wait_until

DEVICE = "dev-erase"
OWNER, LOCATION = "Ada Lovelace", "12 Analytical Street, London"


def every_value(home: Path, model: str = "devices") -> list[object]:
    """Every value of every row of every table of a read model, decrypted with the mesh's key."""
    db = connect_reader(home / "readmodels" / f"{model}.db", database_key(home, {}))
    try:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()]
        return [value for table in tables for row in db.execute(f'SELECT * FROM "{table}"') for value in row]
    finally:
        db.close()


def device_row(home: Path) -> dict[str, object] | None:
    path = home / "readmodels" / "devices.db"
    if not path.exists():
        return None
    db = connect_reader(path, database_key(home, {}))
    try:
        cursor = db.execute("SELECT * FROM devices WHERE device_id = ?", (DEVICE,))
        row = cursor.fetchone()
        return None if row is None else dict(zip([c[0] for c in cursor.description], row, strict=True))
    finally:
        db.close()


def holds_plaintext(values: list[object]) -> bool:
    return any(isinstance(v, (str, bytes)) and ("Lovelace" in str(v) or "Analytical" in str(v)) for v in values)


async def query(home: Path) -> dict[str, object]:
    """What `mesh.q.devices.get` answers an admin for the device (the query function both doors call)."""
    models = ReadModels(home / "readmodels", database_key(home, {}), role="admin")
    try:
        return await devices_get(models, DeviceGet(id=DEVICE))
    finally:
        readers.close(home / "readmodels")


async def history(env: dict[str, str], subject: str) -> list[tuple[bytes, Event | None]]:
    document = json.loads(run("env", "--json", env=env).stdout)
    identity = Identity(document["url"], Path(document["ca"]), Path(document["cert"]), Path(document["key"]))
    nc = await connect(identity, name="erasure-test", reconnect=False)
    try:
        return [(stored.data, stored.event) async for stored in EventStore(nc).read(subject)]
    finally:
        await nc.close()


async def test_an_erased_device_leaves_nothing_readable_but_the_history_stays(up: Running, tmp_path: Path) -> None:
    keys = FileKeyStore(up.home / "keys")
    enrolled = run(
        "device", "enroll", DEVICE, "--owner", OWNER, "--location", LOCATION, "--out", str(tmp_path / "d"), env=up.env
    )
    assert enrolled.returncode == 0, enrolled.stderr
    key_file = up.home / "keys" / "devices" / f"{DEVICE}.key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    key = DataKey.from_text(key_file.read_text(), where="test")  # kept only to show what it could open
    row = wait_until(lambda: device_row(up.home), timeout=20, what="the device in the read model")
    assert (row["owner"], row["location"], row["erased_at"]) == (OWNER, LOCATION, None)
    answer = await query(up.home)
    assert (answer["owner"], answer["location"]) == (OWNER, LOCATION)

    [(data, event)] = await history(up.env, subjects.device_event(DEVICE, "enrolled"))
    assert isinstance(event, DeviceEnrolled) and event.owner is not None
    assert b"Lovelace" not in data and b"Analytical" not in data  # sealed from the first event on
    assert unseal(key, event.owner, subject=device_subject(DEVICE), field="owner") == OWNER

    keyless = tmp_path / "backup-before"
    assert run("backup", str(keyless), env=up.env).returncode == 0
    assert not list(keyless.rglob("*.key")) and not (keyless / "home" / "keys").exists()

    # Mistakes: one line, exit non-zero, and nothing changes.
    unknown = one_line_error(run("erase", "device", "dev-ghost", "--yes", env=up.env))
    assert "dev-ghost" in unknown and "mahavishnu device list" in unknown
    assert "--yes" in one_line_error(run("erase", "device", DEVICE, env=up.env))
    assert keys.get(device_subject(DEVICE)) is not None
    assert await history(up.env, "mesh.evt.device.*.erased") == []

    erased = run("erase", "device", DEVICE, "--yes", env=up.env)
    assert erased.returncode == 0, erased.stderr
    assert f"erased {DEVICE}: data key {key.key_id} destroyed" in erased.stdout
    assert not key_file.exists() and keys.get(device_subject(DEVICE)) is None
    assert key.to_text().split()[1] not in erased.stdout + erased.stderr

    # The live read model drops the fields when it applies the erasure.
    row = wait_until(
        lambda: (r := device_row(up.home)) and r["erased_at"] and r, timeout=20, what="the erasure applied"
    )
    assert (row["owner"], row["location"], row["status"]) == (None, None, "enrolled")
    wal = up.home / "readmodels" / "devices.db-wal"  # its older page images held the fields: emptied
    wait_until(lambda: not wal.exists() or wal.stat().st_size == 0, timeout=10, what="the WAL emptied")
    answer = await query(up.home)
    assert (answer["owner"], answer["location"]) == (None, None) and answer["erased_at"]

    # The events stay; what they seal opens with no key the mesh holds.
    [(data_after, event_after)] = await history(up.env, subjects.device_event(DEVICE, "enrolled"))
    assert data_after == data and isinstance(event_after, DeviceEnrolled) and event_after.owner is not None
    other = keys.create(device_subject("dev-someone-else"))
    try:
        unseal(other, event_after.owner, subject=device_subject(DEVICE), field="owner")
        raise AssertionError("a sealed field opened with another key")
    except SealingError:
        pass
    [(_, recorded)] = await history(up.env, subjects.device_event(DEVICE, "erased"))
    assert isinstance(recorded, DeviceErased) and recorded.key_id == key.key_id
    audit = [e for _, e in await history(up.env, "mesh.audit.privacy.>") if isinstance(e, AuditRecorded)]
    assert [(a.action, a.target, a.details["key_id"]) for a in audit] == [("device.erase", DEVICE, key.key_id)]
    assert audit[0].details["operator"] and audit[0].details["fields"] == ["owner", "location"]

    # The key itself was never anywhere but in its file: not in a stream, a log line or a read model.
    secret = key.to_text().split()[1]
    forms = (secret.encode(), base64.b64encode(bytes.fromhex(secret)), bytes.fromhex(secret))
    payloads = [data for data, _ in await history(up.env, "mesh.evt.>") + await history(up.env, "mesh.audit.>")]
    assert not [p for p in payloads for form in forms if form in p]
    assert secret not in up.log() and not any(secret in str(v) for v in every_value(up.home, "audit"))

    # A rebuild from the streams holds nothing of them.
    rebuilt = run("projections", "rebuild", "devices", env=up.env, timeout=120)
    assert rebuilt.returncode == 0, rebuilt.stderr
    row = device_row(up.home)
    assert row is not None and (row["owner"], row["location"]) == (None, None) and row["erased_at"]
    assert not holds_plaintext(every_value(up.home))
    assert not any(holds_plaintext(every_value(up.home, model)) for model in ("commands", "audit"))

    again = run("erase", "device", DEVICE, "--yes", env=up.env)
    assert again.returncode == 0 and "already erased" in again.stdout, again
    assert len(await history(up.env, subjects.device_event(DEVICE, "erased"))) == 1

    # The backup made before the erasure, without keys, restores the sealed events and nothing to open them.
    code, _ = up.stop()
    assert code == 0
    shutil.rmtree(up.home / "jetstream")
    restored = run("restore", str(keyless), env=up.env, timeout=120)
    assert restored.returncode == 0, restored.stderr
    row = device_row(up.home)
    assert row is not None and (row["owner"], row["location"]) == (None, None)
    assert not holds_plaintext(every_value(up.home))


async def test_an_erasure_cut_short_after_the_key_went_is_recorded_by_running_it_again(
    mesh: Mesh, store: EventStore, tmp_path: Path
) -> None:
    device_id = "dev-cut-short"
    await devices.enroll(mesh.home, mesh.settings, store, device_id, out_dir=tmp_path / "d", personal={"owner": OWNER})
    mesh.home.data_keys.destroy(device_subject(device_id))  # as if the command died right after the key went

    done = await erasure.erase(mesh.home, store, device_id, operator="ann")
    assert (done.already, done.key_id) == (False, "")
    again = await erasure.erase(mesh.home, store, device_id, operator="ann")
    assert again.already and again.at == done.at
    assert len([s async for s in store.read(subjects.device_event(device_id, "erased"))]) == 1

    with pytest.raises(erasure.UnknownDevice) as caught:
        await erasure.erase(mesh.home, store, "dev-never", operator="ann")
    assert "dev-never" in str(caught.value) and "mahavishnu device list" in str(caught.value)


def test_an_erasure_with_the_mesh_stopped_runs_its_own_server(tmp_path: Path) -> None:
    running = start_up(tmp_path)
    try:
        folder = str(tmp_path / "d")
        enrolled = run("device", "enroll", "dev-offline", "--owner", OWNER, "--out", folder, env=running.env)
        assert enrolled.returncode == 0, enrolled.stderr
        code, out = running.stop()
        assert code == 0, (out, running.log()[-3000:])
        erased = run("erase", "device", "dev-offline", "--yes", env=running.env)
        assert erased.returncode == 0 and "erased dev-offline" in erased.stdout, erased
        assert not (running.home / "keys" / "devices" / "dev-offline.key").exists()
        rebuilt = run("projections", "rebuild", "devices", env=running.env)  # also with the mesh stopped
        assert rebuilt.returncode == 0, rebuilt.stderr
        assert not holds_plaintext(every_value(running.home))
    finally:
        stop_up(running)
