"""Repositories to poll: what `repo add` accepts (pure checks), and the registry folded from their events.

A repository is a local path, read in place, or a remote URL, fetched into a mirror. A
URL never carries credentials: it is stored in an event, which every reader of the stream
sees; remotes that need them authenticate by SSH key/agent or a credential helper.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import urlsplit

import nats.errors

from core.events import CommitIndexed, Event, RepoAdded, RepoCommitSeen, RepoRemoved
from core.store import EventStore, StoredEvent
from core.store.nats_errors import from_exception
from core.streams import stream_for
from core.subjects import token
from projections.codeindex.errors import CodeIndexError
from projections.codeindex.secrets import find_secrets

SUBJECTS = "mesh.evt.repo.>"
# Only the events the registry folds: the file and secret events on the same subjects are the
# bulk of a code index (analyses, snippets), and a registry read must not replay all of them.
_FOLDED = tuple(f"mesh.evt.repo.*.{what}" for what in ("added", "removed", "commit", "indexed"))
_SCP_LIKE = re.compile(r"^(?:(?P<user>[^@/\s]+)@)?(?P<host>[A-Za-z0-9.\-]+):(?P<path>[^/\s].*)$")  # user@host:path
_REMOTE_SCHEMES = ("https", "http", "ssh", "git", "file")


class RepositoryRefused(CodeIndexError):
    """`repo add` was given something that cannot be polled; the message says what to give instead."""


@dataclass(frozen=True)
class Location:
    location: str  # an absolute path, or the URL as given
    remote: bool
    host: str  # the remote's host ("" for a local path or file://): one circuit breaker per host


def parse_location(text: str, *, cwd: Path) -> Location:
    """Where a repository is (pure but for resolving a relative path against `cwd`)."""
    parts = urlsplit(text)
    if parts.scheme in _REMOTE_SCHEMES:
        if parts.password is not None or _is_credential(parts.username):
            raise _credentials_refused(text)
        return Location(text, remote=True, host=parts.hostname or "")
    scp = _SCP_LIKE.match(text)
    if scp and not Path(text).exists() and "\\" not in text:
        if scp["user"] is not None and (":" in scp["user"] or _is_credential(scp["user"])):
            raise _credentials_refused(text)
        return Location(text, remote=True, host=scp["host"])
    if parts.scheme:
        raise RepositoryRefused(f"{text}: unknown scheme {parts.scheme!r}; use one of {', '.join(_REMOTE_SCHEMES)}")
    return Location(str((cwd / text).resolve()), remote=False, host="")


def _is_credential(user: str | None) -> bool:
    """A user name that is a token (`https://ghp_...@github.com/...`): a credential all the same."""
    return user is not None and bool(find_secrets(user, path="url"))


def _credentials_refused(text: str) -> RepositoryRefused:
    # The whole user part is hidden: the message is printed and logged, the credential must not be.
    shown = re.sub(r"^([a-z+]+://)?[^@/]*@", r"\1***@", text)
    return RepositoryRefused(
        f"{shown}: credentials in a URL would be stored in an event that every reader of the stream sees; "
        "use an SSH key or agent, or a git credential helper"
    )


def default_name(location: Location) -> str:
    """The repository's name when none is given: the last piece of its path, without `.git` (pure)."""
    path = urlsplit(location.location).path if location.remote else location.location
    if location.remote and "://" not in location.location:
        path = location.location.rsplit(":", 1)[-1]
    base = path.rstrip("/").rsplit("/", 1)[-1]
    return base.removesuffix(".git") or "repo"


@dataclass(frozen=True)
class Repository:
    name: str
    location: str
    branch: str
    remote: bool
    seen: str = ""  # the last head a poll saw
    indexed: str = ""  # the last commit indexed
    added: str = ""  # the event id of its RepoAdded: a repository removed and added again is a new registration

    @property
    def host(self) -> str:
        return parse_location(self.location, cwd=Path("/")).host if self.remote else ""


@dataclass(frozen=True)
class Registry:
    """The repositories being polled, by name, as their events say (pure fold)."""

    repos: dict[str, Repository]

    @classmethod
    def of(cls, events: Iterable[Event]) -> Registry:
        registry = cls({})
        for event in events:
            registry = registry.apply(event)
        return registry

    def apply(self, event: Event) -> Registry:
        match event:
            case RepoAdded():
                return self._with(
                    Repository(event.repo, event.location, event.branch, event.remote, added=event.event_id)
                )
            case RepoRemoved() if event.repo in self.repos:
                return Registry({name: repo for name, repo in self.repos.items() if name != event.repo})
            case RepoCommitSeen() if event.repo in self.repos:
                return self._with(replace(self.repos[event.repo], seen=event.commit))
            case CommitIndexed() if event.repo in self.repos:
                return self._with(replace(self.repos[event.repo], indexed=event.commit))
        return self  # file events and the like: nothing about which repositories exist

    def _with(self, repo: Repository) -> Registry:
        return Registry({**self.repos, repo.name: repo})

    def check_new(self, name: str, location: Location) -> None:
        """Refuse a name that cannot be a subject token, is taken, or a location already registered."""
        try:
            token(name, what="repository name")
        except ValueError as exc:
            raise RepositoryRefused(f"{exc}; pick one with --name") from None
        if name in self.repos:
            raise RepositoryRefused(f"a repository named {name!r} is registered already: pick another with --name")
        for repo in self.repos.values():
            if repo.location == location.location:
                raise RepositoryRefused(f"{location.location} is registered already, as {repo.name!r}")


class RegistryFollower:
    """The registry kept current from the stream: each refresh reads only what was appended since the last.

    It reads the folded subjects one filter at a time, so each read may reach a different
    point of the stream; all of them reach at least the stream's last sequence taken before
    the first, and only events up to it are applied: the rest are read again next time.
    """

    def __init__(self, store: EventStore) -> None:
        self.store = store
        self.registry = Registry({})
        self._next_seq = 1

    async def refresh(self) -> Registry:
        """Apply what was appended since the last refresh; StoreError when the stream cannot be read."""
        upto = await self._last_seq()
        if upto < self._next_seq:
            return self.registry  # nothing new on the stream: no consumers created at all
        found: list[StoredEvent] = []
        for subject in _FOLDED:
            found += [stored async for stored in self.store.read(subject, self._next_seq) if stored.seq <= upto]
        for stored in sorted(found, key=lambda s: s.seq):  # one order across filters: a re-add after a removal
            if stored.event is not None:
                self.registry = self.registry.apply(stored.event)
        self._next_seq = upto + 1
        return self.registry

    async def _last_seq(self) -> int:
        name = stream_for(SUBJECTS.removesuffix(">"), self.store.streams).name
        try:
            info = await self.store.js.stream_info(name)
        except (TimeoutError, nats.errors.Error) as exc:
            raise from_exception(exc, doing=f"read the state of stream {name}") from exc
        return int(info.state.last_seq)


async def load_registry(store: EventStore) -> Registry:
    return await RegistryFollower(store).refresh()
