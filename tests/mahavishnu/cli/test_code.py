"""The code index end to end: `repo add` on a running mesh, the poller, the indexer, `code ...` and the NATS door."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.mahavishnu.cli_harness import Running, one_line_error, run, start_up, stop_up
from tests.projections.codeindex.test_poller import commit
from tests.waiting import wait_until

APP = '''"""Orders."""


def price(order):
    """The order's price, taxes included."""
    return subtotal(order) * 1.2


def subtotal(order):
    return sum(line.amount for line in order.lines)
'''


@pytest.fixture
def mesh(tmp_path: Path) -> Iterator[Running]:
    running = start_up(tmp_path, MAHAVISHNU_CODE__POLL_INTERVAL="1s")
    yield running
    stop_up(running)


def repos(env: dict[str, str]) -> dict[str, dict[str, object]]:
    listed = run("code", "repos", "--json", env=env)
    return {r["repo"]: r for r in json.loads(listed.stdout)["repos"]} if listed.returncode == 0 else {}


def test_a_repository_added_is_polled_indexed_and_queryable_and_follows_new_commits(
    mesh: Running, tmp_path: Path
) -> None:
    work = tmp_path / "shop"
    first = commit(work, {"shop/orders.py": APP, "README.md": "The shop.\n"})
    added = run("repo", "add", str(work), env=mesh.env)
    assert added.returncode == 0 and added.stdout.startswith("shop: "), added.stderr
    wait_until(lambda: repos(mesh.env).get("shop", {}).get("indexed_commit") == first, timeout=60, what="the index")

    symbol = run("code", "symbol", "subtotal", env=mesh.env)
    assert "shop:shop/orders.py:9  function subtotal" in symbol.stdout
    context = run("code", "context", "shop", "shop/orders.py:subtotal", env=mesh.env)
    assert "called by: price (shop/orders.py:4)" in context.stdout
    search = json.loads(run("code", "search", "taxes", "--json", env=mesh.env).stdout)
    assert [m["qualname"] for m in search["matches"]][:1] == ["price"]

    second = commit(work, {"shop/refunds.py": "def refund(order):\n    return -price(order)\n"})
    wait_until(lambda: repos(mesh.env)["shop"]["indexed_commit"] == second, timeout=60, what="the new commit")
    files = run("code", "files", "shop", "--commit", second[:10], env=mesh.env)
    assert "shop/refunds.py" in files.stdout and "README.md" in files.stdout
    assert "refund" in run("code", "context", "shop", "shop/orders.py:price", env=mesh.env).stdout

    listed = run("repo", "list", env=mesh.env)
    assert f"shop  {work}  branch HEAD  indexed {second[:12]}" in listed.stdout
    assert run("repo", "remove", "shop", env=mesh.env).returncode == 0
    wait_until(lambda: "shop" not in repos(mesh.env), timeout=30, what="the index to drop the repository")


def test_repo_mistakes_are_named_in_one_line(mesh: Running, tmp_path: Path) -> None:
    (tmp_path / "plain").mkdir()
    assert "does not exist" in one_line_error(run("repo", "add", str(tmp_path / "nowhere"), env=mesh.env))
    assert "is not a git repository" in one_line_error(run("repo", "add", str(tmp_path / "plain"), env=mesh.env))
    refused = one_line_error(run("repo", "add", "https://bob:hunter2@git.example.com/app.git", env=mesh.env))
    assert "credentials in a URL" in refused and "hunter2" not in refused
    assert "no repository named 'ghost'" in one_line_error(run("repo", "remove", "ghost", env=mesh.env))
    assert "PATH:SYMBOL" in one_line_error(run("code", "context", "x", "nocolon", env=mesh.env))


def test_up_index_registers_a_repository_once(tmp_path: Path) -> None:
    work = tmp_path / "tool"
    head = commit(work, {"tool.py": "def run():\n    return 0\n"})
    for _ in range(2):  # the second start finds it registered and leaves it
        running = start_up(tmp_path, "--index", str(work), MAHAVISHNU_CODE__POLL_INTERVAL="1s")
        try:
            wait_until(
                lambda env=running.env: repos(env).get("tool", {}).get("indexed_commit") == head,  # type: ignore[misc]
                timeout=60,
                what="index",
            )
            assert len(json.loads(run("repo", "list", "--json", env=running.env).stdout)) == 1
        finally:
            stop_up(running)
