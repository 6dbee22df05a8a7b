"""`mahavishnu artifact trust` and `artifact sign` as an operator runs them, against a real `up`.

The offline flow end to end: the trust made with offline targets keys before the first
`up`, an artifact's target staged, one key's signature made away from the mesh and carried
back, the other key signing in place; bad input refused in one line.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from tuf.api.metadata import Metadata

from core import subjects
from core.config import load_config
from core.events import TrustMetadataPublished
from core.store import EventStore, connect
from mahavishnu.runtime.home import Home
from tests.mahavishnu.cli_harness import Running, environment, one_line_error, run, start_up, stop_up


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("artifact-trust")


@pytest.fixture(scope="module")
def up(folder: Path) -> Iterator[Running]:
    """A mesh whose trust was made before its first `up`, with 2-of-2 offline targets keys."""
    env = environment(folder / "home")
    assert run("init", env=env).returncode == 0
    made = run(
        "artifact",
        "trust",
        "init",
        "--targets-keys",
        "2",
        "--targets-threshold",
        "2",
        "--offline-keys",
        str(folder / "usb"),
        env=env,
    )
    assert made.returncode == 0, made.stderr
    assert "the mesh is not up" in made.stdout
    running = start_up(folder)
    yield running
    stop_up(running)


@pytest.fixture
async def store(up: Running) -> AsyncIterator[EventStore]:
    identity = Home(up.home).control_identity(load_config(None, env=up.env))
    nc = await connect(identity, name="tests-artifact-trust", reconnect=False)
    try:
        yield EventStore(nc)
    finally:
        await nc.close()


async def test_up_publishes_a_trust_made_before_it(up: Running, store: EventStore) -> None:
    published = [
        (s.event.role, s.event.version)
        async for s in store.read(f"{subjects.EVENTS_PREFIX}.trust.>")
        if isinstance(s.event, TrustMetadataPublished)
    ]
    assert published[:4] == [("root", 1), ("targets", 1), ("snapshot", 1), ("timestamp", 1)]
    shown = json.loads(run("artifact", "trust", "show", "--json", env=up.env).stdout)
    assert shown["roles"]["targets"]["threshold"] == 2
    assert [key["online"] for key in shown["roles"]["targets"]["keys"]] == [False, False]
    assert all(key["online"] for key in shown["roles"]["timestamp"]["keys"])
    assert "already" in one_line_error(run("artifact", "trust", "init", env=up.env))


async def test_a_target_signed_offline_then_in_place_is_published(up: Running, store: EventStore, folder: Path) -> None:
    home = Home(up.home)
    artifact = folder / "pump-fw-1.0.0.bin"
    artifact.write_bytes(b"pump")
    added = run(
        "artifact",
        "add",
        str(artifact),
        "--name",
        "pump-fw",
        "--version",
        "1.0.0",
        "--device-type",
        "pump",
        "--quiet",
        env=up.env,
    )
    assert added.returncode == 0, added.stderr
    assert added.stdout.splitlines()[1] == (
        "pump-fw@1.0.0: targets v2 waits for 2 more signature(s) of the offline targets keys: "
        "`mahavishnu artifact sign --key FILE`"
    )
    assert "0 of 2 signatures" in run("artifact", "trust", "show", env=up.env).stdout

    # Away from the mesh: a copy of the staged file and one key, no state directory.
    away = folder / "away"
    away.mkdir()
    shutil.copy(home.root / "trust" / "staged" / "targets.json", away / "targets.json")
    first, second = sorted((folder / "usb" / "targets").glob("*.key"))
    offline_env = {k: v for k, v in up.env.items() if k != "MAHAVISHNU_HOME"} | {"MAHAVISHNU_HOME": str(away / "none")}
    signed = run(
        "artifact",
        "sign",
        "--key",
        str(first),
        str(away / "targets.json"),
        "--out",
        str(away / "sig.json"),
        env=offline_env,
    )
    assert signed.returncode == 0, signed.stderr
    assert not (away / "none").exists()

    added = run("artifact", "trust", "add-signature", str(away / "sig.json"), env=up.env)
    assert added.stdout.strip() == "targets v2 has 1 of 2 signatures: not published yet"
    in_place = run("artifact", "sign", "--key", str(second), env=up.env)
    assert in_place.returncode == 0, in_place.stderr
    assert in_place.stdout.startswith("published targets v2, snapshot v2, timestamp v2")
    shown = json.loads(run("artifact", "trust", "show", "--json", env=up.env).stdout)
    assert shown["targets"] == ["pump-fw/1.0.0"]
    target = Metadata.from_bytes((home.root / "trust" / "repository" / "2.targets.json").read_bytes()).signed.targets[
        "pump-fw/1.0.0"
    ]
    assert (target.length, target.hashes["sha256"]) == (4, hashlib.sha256(b"pump").hexdigest())
    assert shown["staged"] is None
    assert "nothing to sign" in one_line_error(run("artifact", "sign", "--key", str(second), env=up.env))


def test_bad_input_is_refused_in_one_line(up: Running, folder: Path) -> None:
    garbage = folder / "garbage.json"
    garbage.write_text("{}")
    metadata = up.home / "trust" / "repository" / "1.root.json"
    assert "not a signature made by" in one_line_error(
        run("artifact", "trust", "add-signature", str(garbage), env=up.env)
    )
    assert "cannot read the key file" in one_line_error(
        run("artifact", "sign", "--key", str(folder / "missing.key"), str(metadata), env=up.env)
    )
    assert "not an unencrypted PEM private key" in one_line_error(
        run("artifact", "sign", "--key", str(garbage), str(metadata), env=up.env)
    )
    assert "not a TUF metadata file" in one_line_error(
        run("artifact", "sign", "--key", str(garbage), str(garbage), env=up.env)
    )
    assert "threshold" in one_line_error(
        run("artifact", "trust", "init", "--root-keys", "1", "--root-threshold", "2", env=up.env)
    )


def test_rotate_root_with_the_offline_root_key_replaces_the_timestamp_key(up: Running, folder: Path) -> None:
    before = json.loads(run("artifact", "trust", "show", "--json", env=up.env).stdout)["roles"]
    assert "--root-key" in one_line_error(run("artifact", "trust", "rotate-root", "--role", "timestamp", env=up.env))
    root_key = next((folder / "usb" / "root").glob("*.key"))
    rotated = run("artifact", "trust", "rotate-root", "--role", "timestamp", "--root-key", str(root_key), env=up.env)
    assert rotated.returncode == 0, rotated.stderr
    assert rotated.stdout.startswith(f"published root v{before['root']['version'] + 1}")
    after = json.loads(run("artifact", "trust", "show", "--json", env=up.env).stdout)["roles"]
    assert after["timestamp"]["keys"] != before["timestamp"]["keys"]
    assert after["targets"]["keys"] == before["targets"]["keys"]


def test_a_first_up_makes_the_trust_and_an_enrolled_device_gets_its_root(tmp_path: Path) -> None:
    running = start_up(tmp_path)
    try:
        root = running.home / "trust" / "repository" / "1.root.json"
        assert root.is_file()
        artifact = tmp_path / "app.bin"
        artifact.write_bytes(b"app")
        added = run(
            "artifact",
            "add",
            str(artifact),
            "--name",
            "app",
            "--version",
            "2.0",
            "--device-type",
            "rpi4",
            "--quiet",
            env=running.env,
        )
        assert added.stdout.splitlines()[1] == "app@2.0: signed: devices can verify it (targets v2)"
        removed = run("artifact", "remove", "app@2.0", env=running.env)
        assert removed.stdout.splitlines()[1] == "app@2.0: withdrawn from the signed targets (targets v3)"
        enrolled = run("device", "enroll", "dev-trusting", "--out", str(tmp_path / "dev"), env=running.env)
        assert enrolled.returncode == 0, enrolled.stderr
        assert (tmp_path / "dev" / "trust" / "root.json").read_bytes() == root.read_bytes()
        shown = json.loads(run("artifact", "trust", "show", "--json", env=running.env).stdout)
        assert all(key["online"] for role in shown["roles"].values() for key in role["keys"])
    finally:
        stop_up(running)
