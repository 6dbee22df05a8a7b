"""Events of the code index: repositories registered and polled, commits indexed, files and secrets found.

A repository's events share its subject (`mesh.evt.repo.<repo>.<what>`), so one filter
replays everything the code-index read model needs, in order per repository. File events
embed `FileAnalysis` records, already redacted: the read model can be rebuilt from the
stream alone, and no secret value ever reaches the stream (ADR 0005).
"""

from __future__ import annotations

from typing import Literal

from core import subjects
from core.events.base import Event
from core.events.code import FileAnalysis, SecretFinding

IndexMode = Literal["redact", "block"]
CircuitState = Literal["closed", "open", "half-open"]


class RepoAdded(Event, frozen=True, kw_only=True, tag="repo.added.v1"):
    """A repository to poll. `location` is a local path (read in place) or a remote URL
    (fetched into a mirror under $MAHAVISHNU_HOME); never with credentials in it."""

    repo: str  # its name: a subject token
    location: str
    branch: str = ""  # empty: the remote's default branch (local: HEAD)
    remote: bool = False

    def subject(self) -> str:
        return subjects.repo_event(self.repo, "added")


class RepoRemoved(Event, frozen=True, kw_only=True, tag="repo.removed.v1"):
    """The repository is no longer polled; its index is dropped from the read model."""

    repo: str

    def subject(self) -> str:
        return subjects.repo_event(self.repo, "removed")


class RepoCommitSeen(Event, frozen=True, kw_only=True, tag="repo.commit_seen.v1"):
    """A poll found a new head commit on the tracked branch: indexing starts."""

    repo: str
    commit: str
    previous: str = ""  # the last indexed commit; empty: index everything

    def subject(self) -> str:
        return subjects.repo_event(self.repo, "commit")


class RepoPollFailed(Event, frozen=True, kw_only=True, tag="repo.poll_failed.v1"):
    """A poll failed; `reason` says why in words (no credentials), `host` is the remote's ('' for local)."""

    repo: str
    reason: str
    host: str = ""

    def subject(self) -> str:
        return subjects.repo_event(self.repo, "poll-failed")


class CircuitChanged(Event, frozen=True, kw_only=True, tag="repo.circuit_changed.v1"):
    """The circuit breaker of a remote host changed state; `repo` is the repository whose poll changed it."""

    repo: str
    host: str
    state: CircuitState
    failures: int = 0  # consecutive, when it opened
    reason: str = ""

    def subject(self) -> str:
        return subjects.repo_event(self.repo, "circuit")


class FileIndexed(Event, frozen=True, kw_only=True, tag="code.file_indexed.v1"):
    """One file's content at `commit`, analysed and redacted; a skipped file says why in `analysis`."""

    repo: str
    commit: str
    analysis: FileAnalysis

    def subject(self) -> str:
        return subjects.repo_event(self.repo, "file")


class FileRemoved(Event, frozen=True, kw_only=True, tag="code.file_removed.v1"):
    """A file that the diff to `commit` deleted (or renamed away)."""

    repo: str
    commit: str
    path: str

    def subject(self) -> str:
        return subjects.repo_event(self.repo, "file-removed")


class SecretFound(Event, frozen=True, kw_only=True, tag="code.secret_found.v1"):
    """A secret in a file: its type, file, line and keyed hash, never its value."""

    repo: str
    commit: str
    path: str
    finding: SecretFinding
    blocked: bool = False  # block mode refused to index the file because of it

    def subject(self) -> str:
        return subjects.repo_event(self.repo, "secret")


class CommitIndexed(Event, frozen=True, kw_only=True, tag="code.commit_indexed.v1"):
    """Every file event of `commit` is in the stream: from here it is queryable."""

    repo: str
    commit: str
    previous: str = ""  # empty: a full index
    files_changed: int = 0
    files_removed: int = 0
    seconds: float = 0.0
    mode: IndexMode = "redact"

    def subject(self) -> str:
        return subjects.repo_event(self.repo, "indexed")
