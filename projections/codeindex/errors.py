"""The errors of the code index; their place in the whole tree is drawn in core.errors.

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
