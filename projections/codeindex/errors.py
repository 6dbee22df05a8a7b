"""The errors of the code index.

    MahavishnuError
    └── CodeIndexError           the code index could not do what was asked
        ├── RepositoryError      a repository cannot be opened or read (missing, not a repository,
        │                        unknown branch or commit)
        ├── RemoteAuthFailed     a remote asked for credentials and no source gave any it accepted
        ├── HashKeyError         the secret-hash key file is unsafe or unreadable
        └── IndexingFailed       the analysis pool broke down (a worker died); the next index restarts it

libgit2's errors are translated into these in `projections.codeindex.gitread`, once.
"""

from __future__ import annotations

from core.errors import MahavishnuError


class CodeIndexError(MahavishnuError):
    """The code index could not complete an operation."""


class RepositoryError(CodeIndexError):
    """A repository could not be opened or read; the message names the path and what to do."""


class RemoteAuthFailed(CodeIndexError):
    """A remote asked for credentials and none of the sources gave any it accepted; the message says what to set up."""


class HashKeyError(CodeIndexError):
    """The key that hashes secret values is missing, malformed or readable by others."""


class IndexingFailed(CodeIndexError):
    """A commit could not be indexed for a reason of the indexer's own (its worker pool broke down)."""
