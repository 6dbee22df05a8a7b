"""Credentials for private remotes: git credential helpers against a real authenticating git HTTP server; SSH keys."""

from __future__ import annotations

import uuid
from pathlib import Path

import msgspec
import pygit2
import pytest
from pygit2.enums import CredentialType

from core.config import CodeSettings
from core.events import RepoAdded, RepoPollFailed
from core.store import EventStore
from projections.codeindex.poller import Poller
from projections.codeindex.remote_auth import (
    FetchCredentials,
    RemoteAuthFailed,
    credential_request,
    key_pairs,
    parse_credential,
)
from tests.projections.codeindex.githttp import GitHttp, git_http_server
from tests.projections.codeindex.gitrepos import GitRepo

PASSWORD = "s3cret-" + uuid.uuid4().hex[:6]


async def nothing(repo: str, git_dir: Path, commit: str, previous: str) -> None:
    pass


def use_helper(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, stored: str | None) -> None:
    """The git configuration of the user the mesh runs as: a `store` credential helper holding `stored`, or none."""
    config = tmp_path / "gitconfig"
    config.write_text("" if stored is None else f"[credential]\n\thelper = store --file={tmp_path / 'credentials'}\n")
    if stored is not None:
        (tmp_path / "credentials").write_text(stored + "\n")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(config))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")


@pytest.fixture
def private(tmp_path: Path) -> tuple[GitHttp, str]:
    """A repository served only to alice with PASSWORD, and its head commit."""
    origin = GitRepo(tmp_path / "served" / "app.git", bare=True)
    head = origin.commit({"app.py": b"VALUE = 1\n"})
    with git_http_server(tmp_path / "served", "alice", PASSWORD) as server:
        yield server, head


async def poll(store: EventStore, tmp_path: Path, url: str) -> tuple[str | None, list[object]]:
    repo = f"r-{uuid.uuid4().hex[:8]}"
    await store.append(RepoAdded(repo=repo, location=url, remote=True))
    poller = Poller(store, tmp_path / "mirrors", CodeSettings(), nothing, fetch_timeout=20)
    head = await poller.poll((await poller.follower.refresh()).repos[repo])
    return head, [s.event async for s in store.read(f"mesh.evt.repo.{repo}.>")]


def test_the_credential_protocol_is_written_and_read() -> None:
    assert credential_request("https://git.example.com/app.git", None) == "url=https://git.example.com/app.git\n\n"
    assert credential_request("https://h/a", "bob") == "url=https://h/a\nusername=bob\n\n"
    assert parse_credential("protocol=https\nhost=h\nusername=bob\npassword=a=b\n") == ("bob", "a=b")
    assert parse_credential("protocol=https\nhost=h\nusername=bob\n") is None


def test_ssh_offers_the_agent_then_each_default_key_once_then_says_what_to_do(tmp_path: Path) -> None:
    for key in ("id_rsa", "id_ed25519"):
        (tmp_path / key).write_text("private")
        (tmp_path / f"{key}.pub").write_text("public")
    (tmp_path / "id_ecdsa").write_text("a private key without its public half: libssh2 cannot use it")
    assert key_pairs(tmp_path) == [(tmp_path / f"{k}.pub", tmp_path / k) for k in ("id_ed25519", "id_rsa")]
    callbacks = FetchCredentials(env={"SSH_AUTH_SOCK": "/run/agent.sock"}, ssh_dir=tmp_path)
    url = "ssh://git@git.example.com/app.git"
    assert isinstance(callbacks.credentials(url, None, CredentialType.USERNAME), pygit2.Username)
    offered = [callbacks.credentials(url, "git", CredentialType.SSH_KEY) for _ in range(3)]
    assert isinstance(offered[0], pygit2.KeypairFromAgent)
    assert [k.credential_tuple[2] for k in offered[1:]] == [str(tmp_path / "id_ed25519"), str(tmp_path / "id_rsa")]
    with pytest.raises(RemoteAuthFailed) as refused:
        callbacks.credentials(url, "git", CredentialType.SSH_KEY)
    assert "the SSH agent" in str(refused.value) and "id_rsa" in str(refused.value)
    with pytest.raises(RemoteAuthFailed, match="SSH_AUTH_SOCK unset"):
        FetchCredentials(env={}, ssh_dir=tmp_path / "none").credentials(url, "git", CredentialType.SSH_KEY)


async def test_a_private_http_remote_is_fetched_with_what_the_credential_helper_holds(
    store: EventStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, private: tuple[GitHttp, str]
) -> None:
    server, head = private
    use_helper(monkeypatch, tmp_path, f"http://alice:{PASSWORD}@127.0.0.1:{server.port}")
    got, events = await poll(store, tmp_path, server.url("app.git"))
    assert got == head
    assert not any(PASSWORD.encode() in msgspec.json.encode(e) for e in events)


async def test_without_a_credential_helper_the_reason_says_to_configure_one(
    store: EventStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, private: tuple[GitHttp, str]
) -> None:
    server, _ = private
    use_helper(monkeypatch, tmp_path, None)
    got, events = await poll(store, tmp_path, server.url("app.git"))
    [failed] = [e for e in events if isinstance(e, RepoPollFailed)]
    assert got is None and "asks for credentials and no git credential helper gave" in failed.reason


async def test_a_refused_password_fails_the_poll_once_and_is_never_repeated(
    store: EventStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, private: tuple[GitHttp, str]
) -> None:
    server, _ = private
    use_helper(monkeypatch, tmp_path, f"http://alice:wrong-{PASSWORD}@127.0.0.1:{server.port}")
    got, events = await poll(store, tmp_path, server.url("app.git"))
    [failed] = [e for e in events if isinstance(e, RepoPollFailed)]
    assert got is None and "asks for credentials and refused the user name and password" in failed.reason
    assert not any(PASSWORD.encode() in msgspec.json.encode(e) for e in events)
