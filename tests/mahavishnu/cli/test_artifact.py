"""`mahavishnu artifact` as an operator runs it against a real `up`: add with its progress, list, show,
remove, and each refusal in one line; how artifacts are printed (pure)."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from mahavishnu.cli.artifact import artifact_line, artifact_text, size_text
from mahavishnu.updates.catalog import Artifact
from tests.mahavishnu.cli_harness import Running, one_line_error, run, start_up, stop_up


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    running = start_up(tmp_path_factory.mktemp("artifact"))
    yield running
    stop_up(running)


def test_add_list_show_remove(up: Running, tmp_path: Path) -> None:
    data = os.urandom(300_000)
    path = tmp_path / "app-1.2.0.tar"
    path.write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()

    added = run(
        "artifact",
        "add",
        str(path),
        "--name",
        "app",
        "--version",
        "1.2.0",
        "--device-type",
        "rpi4",
        "--depends",
        "base@2",
        "--depends",
        "libc",
        env=up.env,
    )
    assert added.returncode == 0, added.stderr
    assert added.stdout.startswith("app@1.2.0  rpi4  293.0 KiB  sha256:" + digest[:16])
    assert "uploading app@1.2.0 [" in added.stderr and "100%" in added.stderr
    assert added.stdout.splitlines()[1].startswith("app@1.2.0: signed: devices can verify it (targets v")

    listed = run("artifact", "list", "--json", env=up.env)
    [document] = [json.loads(line) for line in listed.stdout.splitlines()]
    assert (document["name"], document["length"], document["sha256"]) == ("app", len(data), digest)
    assert (document["depends"], document["filename"], document["added_by"]) == (
        ["base@2", "libc"],
        path.name,
        "control",
    )

    shown = run("artifact", "show", "app@1.2.0", env=up.env)
    assert shown.returncode == 0 and f"sha256: {digest}" in shown.stdout
    assert "bytes: in the artifacts bucket, 3 chunks" in shown.stdout

    removed = run("artifact", "remove", "app@1.2.0", "--reason", "superseded", env=up.env)
    assert removed.returncode == 0
    assert removed.stdout.splitlines()[0] == "app@1.2.0: removed"
    assert removed.stdout.splitlines()[1].startswith("app@1.2.0: withdrawn from the signed targets (targets v")
    assert run("artifact", "list", env=up.env).stdout == ""


def test_refusals_are_one_line(up: Running, tmp_path: Path) -> None:
    path = tmp_path / "app.bin"
    path.write_bytes(b"bytes")
    empty = tmp_path / "empty.bin"
    empty.write_bytes(b"")
    assert (
        run(
            "artifact",
            "add",
            str(path),
            "--name",
            "tool",
            "--version",
            "1",
            "--device-type",
            "x",
            "--quiet",
            env=up.env,
        ).returncode
        == 0
    )

    cases = [
        (("add", str(path), "--name", "tool", "--version", "1", "--device-type", "x"), "artifact tool@1 exists"),
        (("add", str(empty), "--name", "tool", "--version", "2", "--device-type", "x"), "is empty"),
        (("add", str(tmp_path / "nope"), "--name", "tool", "--version", "2", "--device-type", "x"), "no file"),
        (("add", str(path), "--name", "Tool", "--version", "2", "--device-type", "x"), "artifact name 'Tool'"),
        (("add", str(path), "--name", "tool", "--version", "2", "--device-type", "x y"), "device type 'x y'"),
        (("show", "tool@9"), "no artifact tool@9"),
        (("remove", "tool"), "NAME@VERSION"),
    ]
    for arguments, said in cases:
        assert said in one_line_error(run("artifact", *arguments, env=up.env)), arguments


def an_artifact(**fields: object) -> Artifact:
    values: dict[str, object] = {
        "name": "app",
        "version": "1.0",
        "device_type": "rpi4",
        "length": 50 * 1024 * 1024,
        "sha256": "ab" * 32,
        "depends": (),
        "filename": "app.tar",
        "added_at": datetime(2026, 12, 7, 9, 30, tzinfo=UTC),
        "added_by": "olga",
    }
    return Artifact(**{**values, **fields})  # type: ignore[arg-type]


def test_how_artifacts_are_printed() -> None:
    assert [size_text(n) for n in (0, 1023, 1024, 1536, 50 * 1024 * 1024)] == [
        "0 B",
        "1023 B",
        "1.0 KiB",
        "1.5 KiB",
        "50.0 MiB",
    ]
    assert artifact_line(an_artifact(depends=("base@2",))) == (
        "app@1.0  rpi4  50.0 MiB  sha256:abababababababab  added 2026-12-07 09:30:00 by olga  depends base@2"
    )
    artifact = an_artifact()
    assert artifact_text(artifact, None).endswith(
        "bytes: missing from the artifacts bucket (remove it and add it again)"
    )
    wrong = {"size": 3, "chunks": 1, "sha256": "00"}
    assert "NOT the recorded length or digest" in artifact_text(artifact, wrong)
