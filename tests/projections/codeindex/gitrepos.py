"""Real git repositories for the indexer's tests, written through pygit2's object database.

Each commit is a whole snapshot: a mapping from path to file bytes, a `Link` (symlink) or a
`Submodule`. Nothing is checked out; the indexer reads objects, not the working tree.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pygit2
from pygit2.enums import FileMode

SIGNATURE = pygit2.Signature("Test", "test@example.invalid", 1_700_000_000, 0)


@dataclass(frozen=True)
class Link:
    target: str


@dataclass(frozen=True)
class Submodule:
    commit: str  # 40 hex digits of another repository's commit


Content = bytes | Link | Submodule


class GitRepo:
    """A repository made by a test; `commit(files)` records a snapshot on `main`."""

    def __init__(self, path: Path, *, bare: bool = False) -> None:
        self.path = path
        self.repo = pygit2.init_repository(str(path), bare=bare, initial_head="main")

    def commit(self, files: dict[str, Content], *, parents: list[str] | None = None, branch: str = "main") -> str:
        """Commit `files` as the whole tree; parents default to the branch's tip. Moves the branch (forced)."""
        ref = f"refs/heads/{branch}"
        if parents is None:
            tip = self.repo.references.get(ref)
            parents = [str(tip.target)] if tip is not None else []
        tree = self._tree(files)
        oid = self.repo.create_commit(None, SIGNATURE, SIGNATURE, "snapshot", tree, parents)
        self.repo.references.create(ref, oid, force=True)
        return str(oid)

    def _tree(self, files: dict[str, Content]) -> pygit2.Oid:
        here: dict[str, Content] = {}
        below: dict[str, dict[str, Content]] = {}
        for path, content in files.items():
            head, _, rest = path.partition("/")
            if rest:
                below.setdefault(head, {})[rest] = content
            else:
                here[head] = content
        builder = self.repo.TreeBuilder()
        for name, content in here.items():
            if isinstance(content, Link):
                builder.insert(name, self.repo.create_blob(content.target.encode()), FileMode.LINK)
            elif isinstance(content, Submodule):
                builder.insert(name, pygit2.Oid(hex=content.commit), FileMode.COMMIT)
            else:
                builder.insert(name, self.repo.create_blob(content), FileMode.BLOB)
        for name, subtree in below.items():
            builder.insert(name, self._tree(subtree), FileMode.TREE)
        return builder.write()
