"""What the indexer reads from git: a commit's files, the files two commits differ in, blob contents.

A thin layer over pygit2 (libgit2) plus pure helpers that decide what a tree entry or a
diff delta means for the index. Every libgit2 error is translated into a
`RepositoryError` here, once. Nothing here is async: the indexer calls these functions
through `asyncio.to_thread`, a bounded piece at a time, since libgit2 calls hold the GIL.

A pygit2 `Repository` may be used from any thread but by one at a time; the indexer
awaits each call before the next.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

import pygit2
from pygit2.enums import RepositoryOpenFlag

from projections.codeindex.errors import RepositoryError

__all__ = [
    "BlobEntry",
    "ChangeSet",
    "Delta",
    "EntryKind",
    "PlannedChanges",
    "SkippedEntry",
    "change_set",
    "chunked",
    "entry_kind",
    "full_change_set",
    "list_blobs",
    "open_repository",
    "plan_changes",
    "read_blobs",
    "resolve_head",
]

EntryKind = Literal["file", "symlink", "submodule", "tree", "other"]

# git's tree entry modes (octal, as `git ls-tree` shows them).
_MODE_FILE: Final = 0o100644
_MODE_EXECUTABLE: Final = 0o100755
_MODE_SYMLINK: Final = 0o120000
_MODE_SUBMODULE: Final = 0o160000
_MODE_TREE: Final = 0o040000

_SKIP_REASONS: Final[dict[EntryKind, str]] = {
    "symlink": "a symbolic link: its target is a path, not file content",
    "submodule": "a submodule: a commit of another repository, indexed there if at all",
    "other": "not a regular file",
}


@dataclass(frozen=True, slots=True)
class BlobEntry:
    """A regular file of a commit: its path, blob id (hex), size in bytes and mode."""

    path: str
    blob_id: str
    size: int
    mode: int = _MODE_FILE


@dataclass(frozen=True, slots=True)
class SkippedEntry:
    """A tree entry that is not file content (symlink, submodule), and why it is left out."""

    path: str
    reason: str


@dataclass(frozen=True, slots=True)
class ChangeSet:
    """What indexing `commit` takes: files to (re)index and paths to drop.

    `previous` is the commit the change set is relative to; empty for a full index, in
    which case `to_index` is every file of the commit and `removed` is empty (the read model
    replaces the repository's files wholesale). `full_reason` says why a full index was
    chosen when a previous commit was asked for.
    """

    commit: str
    previous: str
    to_index: tuple[BlobEntry, ...]
    removed: tuple[str, ...] = ()
    skipped: tuple[SkippedEntry, ...] = ()
    full_reason: str = ""

    @property
    def full(self) -> bool:
        return not self.previous


@dataclass(frozen=True, slots=True)
class Delta:
    """One entry of a tree diff, reduced to what `plan_changes` needs (status as git's letter)."""

    status: str  # "A", "D", "M", "T" (type change), "R" (rename), "C" (copy)
    old_path: str
    new_path: str
    old_mode: int
    new_mode: int
    new_id: str


# --- pure helpers -----------------------------------------------------------------------


def entry_kind(mode: int) -> EntryKind:
    """What a tree entry's mode makes it (pure)."""
    if mode in (_MODE_FILE, _MODE_EXECUTABLE):
        return "file"
    if mode == _MODE_SYMLINK:
        return "symlink"
    if mode == _MODE_SUBMODULE:
        return "submodule"
    if mode == _MODE_TREE:
        return "tree"
    return "other"


@dataclass(frozen=True, slots=True)
class PlannedChanges:
    """`plan_changes`'s answer: (path, blob id, mode) to index, paths removed, entries skipped."""

    to_index: tuple[tuple[str, str, int], ...]
    removed: tuple[str, ...]
    skipped: tuple[SkippedEntry, ...]


def plan_changes(deltas: Iterable[Delta]) -> PlannedChanges:
    """Turn a tree diff into files to index and paths to remove (pure).

    A rename (or a diff that shows it as a deletion and an addition) removes the old path
    and indexes the new one: the index is keyed by path, and the content may have changed
    too. A file that became a symlink or submodule is removed, and the new entry skipped;
    the other way round indexes the new file. A copy only adds.
    """
    to_index: dict[str, tuple[str, str, int]] = {}
    removed: set[str] = set()
    skipped: dict[str, SkippedEntry] = {}
    for delta in deltas:
        if delta.status in ("D", "R", "T") and entry_kind(delta.old_mode) == "file":
            removed.add(delta.old_path)
        if delta.status == "D":
            continue
        kind = entry_kind(delta.new_mode)
        if kind == "file":
            to_index[delta.new_path] = (delta.new_path, delta.new_id, delta.new_mode)
            removed.discard(delta.new_path)  # a type change back to a file: indexed, not removed
        elif kind != "tree":
            skipped[delta.new_path] = SkippedEntry(delta.new_path, _SKIP_REASONS[kind])
    return PlannedChanges(
        to_index=tuple(to_index[path] for path in sorted(to_index)),
        removed=tuple(sorted(removed)),
        skipped=tuple(skipped[path] for path in sorted(skipped)),
    )


def chunked(items: Sequence[BlobEntry], *, max_files: int, max_bytes: int) -> Iterator[tuple[BlobEntry, ...]]:
    """Consecutive runs of `items` of at most `max_files` entries and about `max_bytes` in all (pure).

    A run closes before the entry that would take it past `max_bytes`, so only a single
    entry larger than `max_bytes` makes a run that size.
    """
    if max_files < 1 or max_bytes < 1:
        raise ValueError("chunks need room for at least one file and one byte")
    run: list[BlobEntry] = []
    size = 0
    for item in items:
        if run and (len(run) == max_files or size + item.size > max_bytes):
            yield tuple(run)
            run, size = [], 0
        run.append(item)
        size += item.size
    if run:
        yield tuple(run)


# --- libgit2 ------------------------------------------------------------------------------


def open_repository(path: Path | str) -> pygit2.Repository:
    """Open the repository at `path`: a working tree (with `.git`) or a bare repository (a mirror).

    Only `path` itself is tried, never a parent directory: a folder inside some other
    repository must not be read as that repository. Raises RepositoryError when `path`
    does not exist or is not a repository.
    """
    where = Path(path)
    if not where.exists():
        raise RepositoryError(f"repository path {where} does not exist: check the repository's location")
    if not where.is_dir():
        raise RepositoryError(f"repository path {where} is a file, not a directory holding a git repository")
    try:
        return pygit2.Repository(str(where), RepositoryOpenFlag.NO_SEARCH)
    except pygit2.GitError as exc:
        raise RepositoryError(
            f"{where} is not a git repository (neither a working tree with .git nor a bare repository); "
            "clone or initialise it, or point to the right directory"
        ) from exc


def resolve_head(repo: pygit2.Repository, branch: str = "") -> str:
    """The commit id (hex) at the tip of `branch`, or of HEAD when `branch` is empty.

    A branch is looked up as a local branch (`refs/heads/...`, which a mirror has too),
    then as `origin/<branch>`. Raises RepositoryError for an unknown branch or a repository
    without commits.
    """
    try:
        if not branch:
            if repo.head_is_unborn:
                raise RepositoryError(f"repository {_where(repo)} has no commits yet on HEAD")
            return str(repo.head.peel(pygit2.Commit).id)
        ref = repo.references.get(f"refs/heads/{branch}") or repo.references.get(f"refs/remotes/origin/{branch}")
        if ref is None:
            raise RepositoryError(f"repository {_where(repo)} has no branch {branch!r}: check the branch name")
        return str(ref.peel(pygit2.Commit).id)
    except pygit2.GitError as exc:
        raise RepositoryError(f"cannot resolve {branch or 'HEAD'} in {_where(repo)}: {exc}") from exc


def list_blobs(repo: pygit2.Repository, commit: str) -> tuple[tuple[BlobEntry, ...], tuple[SkippedEntry, ...]]:
    """Every regular file of `commit`'s tree in path order, and the entries that are not file content."""
    tree = _commit(repo, commit).tree
    blobs: list[BlobEntry] = []
    skipped: list[SkippedEntry] = []
    odb = repo.odb
    try:
        for path, entry in _walk(tree, ""):
            kind = entry_kind(entry.filemode)
            if kind == "file":
                _, size = odb.read_header(entry.id)  # the size without loading the content
                blobs.append(BlobEntry(path, str(entry.id), size, entry.filemode))
            else:
                skipped.append(SkippedEntry(path, _SKIP_REASONS[kind]))
    except pygit2.GitError as exc:
        raise RepositoryError(f"cannot read the tree of {commit} in {_where(repo)}: {exc}") from exc
    return tuple(sorted(blobs, key=_path)), tuple(sorted(skipped, key=_path))


def _walk(tree: pygit2.Tree, prefix: str) -> Iterator[tuple[str, pygit2.Object]]:
    for entry in tree:
        path = f"{prefix}{entry.name}"
        if entry.filemode == _MODE_TREE:
            yield from _walk(entry, f"{path}/")  # type: ignore[arg-type]  # a tree entry is a Tree
        else:
            yield path, entry


def full_change_set(repo: pygit2.Repository, commit: str, *, reason: str = "") -> ChangeSet:
    """Every file of `commit`, to index from scratch."""
    blobs, skipped = list_blobs(repo, commit)
    return ChangeSet(commit=commit, previous="", to_index=blobs, skipped=skipped, full_reason=reason)


def change_set(repo: pygit2.Repository, commit: str, previous: str = "") -> ChangeSet:
    """What indexing `commit` takes after `previous` was indexed: a tree diff, or everything.

    A full index when `previous` is empty, unknown to the repository (history rewritten and
    the old commits gone), or not an ancestor of `commit` (a force-push): the read model then
    starts the repository afresh instead of trusting an index built from a history that is
    no longer the branch's. Raises RepositoryError when `commit` itself is unknown.
    """
    new = _commit(repo, commit)
    if not previous:
        return full_change_set(repo, commit)
    old = _find_commit(repo, previous)
    if old is None:
        return full_change_set(repo, commit, reason=f"previous commit {previous} is not in the repository")
    try:
        if old.id != new.id and not repo.descendant_of(new.id, old.id):
            return full_change_set(repo, commit, reason=f"previous commit {previous} is not an ancestor of {commit}")
        # No rename detection (find_similar): a rename stays a deletion plus an addition,
        # which is what a path-keyed index needs, and it spares libgit2 the similarity search.
        diff = repo.diff(old, new)
        deltas = [
            Delta(
                status=delta.status_char(),
                old_path=delta.old_file.path,
                new_path=delta.new_file.path,
                old_mode=delta.old_file.mode,
                new_mode=delta.new_file.mode,
                new_id=str(delta.new_file.id),
            )
            for delta in diff.deltas
        ]
        planned = plan_changes(deltas)
        odb = repo.odb
        to_index = tuple(
            BlobEntry(path, blob_id, odb.read_header(blob_id)[1], mode) for path, blob_id, mode in planned.to_index
        )
    except pygit2.GitError as exc:
        raise RepositoryError(f"cannot diff {previous}..{commit} in {_where(repo)}: {exc}") from exc
    return ChangeSet(
        commit=commit, previous=previous, to_index=to_index, removed=planned.removed, skipped=planned.skipped
    )


def read_blobs(repo: pygit2.Repository, entries: Sequence[BlobEntry]) -> list[bytes]:
    """The contents of `entries`' blobs, in order."""
    odb = repo.odb
    try:
        return [odb.read(entry.blob_id)[1] for entry in entries]
    except (pygit2.GitError, KeyError) as exc:
        raise RepositoryError(f"cannot read a blob in {_where(repo)}: {exc}") from exc


def _commit(repo: pygit2.Repository, commit: str) -> pygit2.Commit:
    found = _find_commit(repo, commit)
    if found is None:
        raise RepositoryError(f"commit {commit!r} is not in repository {_where(repo)}: fetch it or check the id")
    return found


def _find_commit(repo: pygit2.Repository, commit: str) -> pygit2.Commit | None:
    try:
        found = repo.get(commit)
    except (ValueError, pygit2.GitError):
        return None  # not a well-formed id
    if found is None:
        return None
    try:
        return found.peel(pygit2.Commit)
    except (pygit2.GitError, pygit2.InvalidSpecError, ValueError):
        return None  # an object that is not a commit


def _where(repo: pygit2.Repository) -> str:
    return str(repo.workdir or repo.path).rstrip("/")


def _path(entry: BlobEntry | SkippedEntry) -> str:
    return entry.path
