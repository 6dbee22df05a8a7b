"""What `repo add` accepts (pure checks) and the registry folded from the repositories' events."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.events import CommitIndexed, RepoAdded, RepoCommitSeen, RepoRemoved
from projections.codeindex.repos import Registry, RepositoryRefused, default_name, parse_location

TOKEN = "ghp_" + "1234567890abcdefghijklmnopqrstuvwxyzAB"  # the shape of a GitHub token, not a real one


@pytest.mark.parametrize(
    ("text", "host", "name"),
    [
        ("https://git.example.com/team/app.git", "git.example.com", "app"),
        ("ssh://git@git.example.com:2222/team/app", "git.example.com", "app"),
        ("git://127.0.0.1:9418/app.git", "127.0.0.1", "app"),
        ("file:///srv/git/app.git", "", "app"),
        ("git@github.com:team/tool.git", "github.com", "tool"),
        ("https://bob@git.example.com/team/app.git", "git.example.com", "app"),  # a login name for a helper
    ],
)
def test_remote_locations_their_host_and_default_name(text: str, host: str, name: str) -> None:
    location = parse_location(text, cwd=Path("/"))
    assert (location.remote, location.host, location.location, default_name(location)) == (True, host, text, name)


@pytest.mark.parametrize(
    "text",
    [
        "https://bob:hunter2@git.example.com/app.git",
        f"https://{TOKEN}@github.com/team/app.git",
        "bob:hunter2@git.example.com:team/app.git",
        f"{TOKEN}@github.com:team/app.git",
    ],
)
def test_credentials_in_a_location_are_refused_without_being_repeated(text: str) -> None:
    with pytest.raises(RepositoryRefused, match="credentials in a URL") as refused:
        parse_location(text, cwd=Path("/"))
    assert "hunter2" not in str(refused.value) and TOKEN not in str(refused.value)
    assert "credential helper" in str(refused.value)


def test_a_local_path_is_made_absolute_and_names_itself(tmp_path: Path) -> None:
    (tmp_path / "shop").mkdir()
    location = parse_location("shop", cwd=tmp_path)
    assert (location.location, location.remote, default_name(location)) == (str(tmp_path / "shop"), False, "shop")


def test_an_unknown_scheme_is_refused_naming_the_ones_known() -> None:
    with pytest.raises(RepositoryRefused, match="unknown scheme 'ftp'") as refused:
        parse_location("ftp://example.com/app.git", cwd=Path("/"))
    assert "https" in str(refused.value)


def test_names_must_be_subject_tokens_and_unique() -> None:
    registry = Registry.of([RepoAdded(repo="app", location="/srv/app")])
    with pytest.raises(RepositoryRefused, match="pick one with --name"):
        registry.check_new("my.app", parse_location("/srv/my.app", cwd=Path("/")))
    with pytest.raises(RepositoryRefused, match="named 'app' is registered already"):
        registry.check_new("app", parse_location("/srv/other", cwd=Path("/")))
    with pytest.raises(RepositoryRefused, match="registered already, as 'app'"):
        registry.check_new("app2", parse_location("/srv/app", cwd=Path("/")))
    registry.check_new("other", parse_location("/srv/other", cwd=Path("/")))  # fine


def test_the_registry_folds_registrations_heads_seen_and_commits_indexed() -> None:
    added = RepoAdded(repo="app", location="/srv/app", branch="main")
    registry = Registry.of(
        [
            added,
            RepoAdded(repo="tool", location="/srv/tool"),
            RepoCommitSeen(repo="app", commit="c1"),
            CommitIndexed(repo="app", commit="c1"),
            RepoCommitSeen(repo="app", commit="c2"),
            RepoRemoved(repo="tool"),
            RepoCommitSeen(repo="tool", commit="late"),  # about a removed repository: ignored
        ]
    )
    [app] = registry.repos.values()
    assert (app.name, app.branch, app.seen, app.indexed, app.added) == ("app", "main", "c2", "c1", added.event_id)
    again = registry.apply(RepoRemoved(repo="app")).apply(RepoAdded(repo="app", location="/srv/app"))
    assert (again.repos["app"].indexed, again.repos["app"].seen) == ("", "")  # a new registration starts over
    assert again.repos["app"].added != added.event_id
