"""Backup and restore drill through the real CLI: backup, wipe, restore, and every read model is as it was."""

from __future__ import annotations

import json
import re
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from core.events import CommandIssued, CommandSucceeded, DeviceEnrolled, DeviceHeartbeat, TelemetryReported
from core.store import EventStore, Identity, connect
from projections.catalog import CATALOG
from tests.mahavishnu.cli_harness import Running, environment, one_line_error, run, start_up, stop_up


async def fill(env: dict[str, str]) -> None:
    """A small fleet's history in all three streams: devices, commands, and a chained audit trail."""
    document = json.loads(run("env", "--json", env=env).stdout)
    identity = Identity(document["url"], Path(document["ca"]), Path(document["cert"]), Path(document["key"]))
    nc = await connect(identity, name="drill", reconnect=False)
    try:
        store = EventStore(nc)
        later = datetime(2030, 1, 1, tzinfo=UTC)
        for n in range(3):
            dev = f"dev-{n}"
            await store.append_many(
                [
                    DeviceEnrolled(device_id=dev, serial=f"{n:02x}", fingerprint_sha256="ab" * 32, not_after=later),
                    DeviceHeartbeat(device_id=dev, uptime_s=10.0 * n, outbox=0),
                    *[TelemetryReported(device_id=dev, metrics={"temp_c": 20.0 + i}) for i in range(50)],
                ]
            )
            await store.append(CommandIssued(command_id=f"c-{n}", device_id=dev, name="ping"))
            await store.append(CommandSucceeded(command_id=f"c-{n}", device_id=dev, result={"pong": True}))
        trail = store.audit
        for n in range(20):
            await trail.record(actor="operator:drill", category="query", action="devices.list", target=f"dev-{n % 3}")
    finally:
        await nc.close()


@pytest.fixture
def backed_up(up: Running, tmp_path: Path) -> tuple[Running, Path, str]:
    """A mesh with history, stopped; its read models' checksums; and a backup with keys."""
    import asyncio

    asyncio.run(fill(up.env))
    firmware = tmp_path / "fw.tar.gz"
    firmware.write_bytes(b"firmware " * 100_000)
    added = run(
        "artifact",
        "add",
        str(firmware),
        "--name",
        "fw",
        "--version",
        "1.0",
        "--device-type",
        "pump",
        env=up.env,
    )
    assert added.returncode == 0, added.stderr
    code, _ = up.stop()
    assert code == 0
    # With up stopped, a rebuild runs on a server of its own: nothing appends meanwhile (up would
    # audit every CLI connection), so the read models are exactly the streams' state.
    for name in CATALOG:
        rebuilt = run("projections", "rebuild", name, env=up.env)
        assert rebuilt.returncode == 0, rebuilt.stderr
    checksums = run("projections", "checksum", env=up.env)
    assert checksums.returncode == 0 and "not built" not in checksums.stdout, checksums
    made = run("backup", str(tmp_path / "backup"), "--include-keys", env=up.env)
    assert made.returncode == 0, made.stderr
    [events] = re.findall(r"EVENTS: (\d+) messages", made.stdout)
    assert int(events) >= 3 * 52  # the devices' events, and the mesh's own
    return up, tmp_path / "backup", checksums.stdout


def test_a_wiped_mesh_restored_from_backup_has_every_read_model_as_before(
    backed_up: tuple[Running, Path, str],
) -> None:
    up, backup, before = backed_up
    shutil.rmtree(up.home)  # the whole state directory: certificates, keys, store, read models
    restored = run("restore", str(backup), env=up.env, timeout=120)
    assert restored.returncode == 0, restored.stderr
    # The artifact's bytes (8 chunks and its info) and the buckets' streams come back with the rest.
    assert re.search(r"OBJ_artifacts: (\d+) messages restored", restored.stdout), restored.stdout
    assert "KV_tuf: " in restored.stdout
    after = run("projections", "checksum", env=up.env)
    assert after.stdout == before
    assert not list(backup.glob("home/**/jetstream*")), "the store itself never goes into the backup"


def test_a_backup_without_keys_leaves_them_out_and_restores_only_into_its_own_mesh(
    backed_up: tuple[Running, Path, str], tmp_path: Path
) -> None:
    up, _, before = backed_up
    keyless = tmp_path / "keyless"
    assert run("backup", str(keyless), env=up.env).returncode == 0
    kept = {p.name for p in keyless.rglob("*") if p.is_file()}
    assert "ca.pem" in kept and not {"ca.key", "key.pem", "db.key"} & kept
    shutil.rmtree(up.home / "jetstream")  # the store is lost, the mesh's own keys are not
    assert run("restore", str(keyless), env=up.env, timeout=120).returncode == 0
    assert run("projections", "checksum", env=up.env).stdout == before
    empty = environment(tmp_path / "empty-home")
    assert "made without --include-keys" in one_line_error(run("restore", str(keyless), env=empty))


def test_an_incomplete_damaged_or_foreign_backup_is_refused_by_name(
    backed_up: tuple[Running, Path, str], tmp_path: Path
) -> None:
    up, backup, _ = backed_up
    other = environment(tmp_path / "other-home")
    assert run("init", env=other).returncode == 0
    assert "another mesh" in one_line_error(run("restore", str(backup), env=other))

    damaged = tmp_path / "damaged"
    shutil.copytree(backup, damaged)
    with (damaged / "streams" / "AUDIT.snap").open("ab") as snap:
        snap.write(b"\0")
    assert "damaged: streams/AUDIT.snap" in one_line_error(run("restore", str(damaged), env=up.env))

    shutil.copy(backup / "streams" / "AUDIT.snap", damaged / "streams" / "AUDIT.snap")
    (damaged / "streams" / "EVENTS.snap").unlink()
    assert "incomplete: streams/EVENTS.snap is missing" in one_line_error(run("restore", str(damaged), env=up.env))
    (damaged / "manifest.json").unlink()
    assert "manifest.json is missing" in one_line_error(run("restore", str(damaged), env=up.env))
    assert "is not empty" in one_line_error(run("backup", str(backup), env=up.env))


def test_a_stopped_loopback_cluster_is_backed_up_and_restored_on_its_own_nodes(tmp_path: Path) -> None:
    """With `[server] cluster = 3`, the commands that start servers for the occasion start the three nodes:
    the streams are R3 and live in the nodes' stores, not in the single server's."""
    import asyncio

    from tests.mahavishnu.runtime.test_cluster import cluster_env

    running = start_up(tmp_path, "--cluster", "3", **cluster_env())
    try:
        asyncio.run(fill(running.env))
        code, _ = running.stop()
        assert code == 0
    finally:
        stop_up(running)
    env = running.env
    for name in CATALOG:
        assert run("projections", "rebuild", name, env=env, timeout=120).returncode == 0
    before = run("projections", "checksum", env=env).stdout
    made = run("backup", str(tmp_path / "backup"), "--include-keys", env=env, timeout=120)
    assert made.returncode == 0, made.stderr
    [events] = re.findall(r"EVENTS: (\d+) messages", made.stdout)
    assert int(events) >= 3 * 52
    shutil.rmtree(running.home)
    restored = run("restore", str(tmp_path / "backup"), env=env, timeout=180)
    assert restored.returncode == 0, restored.stderr
    assert f"EVENTS: {events} messages restored" in restored.stdout
    assert run("projections", "checksum", env=env).stdout == before
    assert not (running.home / "jetstream").exists(), "the single server's store was never started"
