"""`mahavishnu repo add|list|remove` through the real command, against a running mesh."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.mahavishnu.cli_harness import Running, one_line_error, run, start_up, stop_up
from tests.projections.codeindex.test_poller import commit


@pytest.fixture
def mesh(tmp_path: Path) -> Iterator[Running]:
    running = start_up(tmp_path, MAHAVISHNU_CODE__POLL_INTERVAL="1h")  # registrations only: no polls needed
    yield running
    stop_up(running)


def test_add_list_and_remove_local_and_remote_repositories(mesh: Running, tmp_path: Path) -> None:
    assert "no repositories" in run("repo", "list", env=mesh.env).stdout
    commit(tmp_path / "shop", {"a.py": "x = 1\n"})
    origin = tmp_path / "origin.git"
    commit(origin, {"b.py": "y = 2\n"})

    local = run("repo", "add", str(tmp_path / "shop"), "--branch", "main", env=mesh.env)
    assert local.returncode == 0 and "shop: " in local.stdout and "local, read in place" in local.stdout, local.stderr
    remote = run("repo", "add", origin.as_uri(), env=mesh.env)
    assert remote.returncode == 0 and remote.stdout.startswith("origin: "), remote.stderr
    assert "remote, mirrored" in remote.stdout

    assert "a repository named 'shop' is registered already" in one_line_error(
        run("repo", "add", str(origin), "--name", "shop", env=mesh.env)
    )
    assert "registered already, as 'shop'" in one_line_error(
        run("repo", "add", str(tmp_path / "shop"), "--name", "again", env=mesh.env)
    )
    assert "cannot be used in a NATS subject" in one_line_error(
        run("repo", "add", str(tmp_path / "shop"), "--name", "a.b", env=mesh.env)
    )

    listed = run("repo", "list", env=mesh.env).stdout.splitlines()
    assert listed == [
        f"origin  {origin.as_uri()}  branch HEAD  indexed -",
        f"shop  {tmp_path / 'shop'}  branch main  indexed -",
    ]
    as_json = json.loads(run("repo", "list", "--json", env=mesh.env).stdout)
    assert [(r["name"], r["remote"]) for r in as_json] == [("origin", True), ("shop", False)]

    assert run("repo", "remove", "origin", env=mesh.env).returncode == 0
    assert "no repository named 'origin' is registered (registered: shop)" in one_line_error(
        run("repo", "remove", "origin", env=mesh.env)
    )
    assert [line.split()[0] for line in run("repo", "list", env=mesh.env).stdout.splitlines()] == ["shop"]
