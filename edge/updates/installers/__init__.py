"""Installers: how an artifact becomes the running software, as plugins chosen by agent.toml's `installer`.

An installer is any object with these members (structural typing, no base class):

    async download(fetch, update) -> Path       wraps the download step (hooks: the Download state)
    async install(artifact, update) -> dict     prepares the new version; switches NOTHING. Returns
                                                what it needs to activate or undo it (JSON-able; the
                                                update record keeps it across a restart)
    async activate(update, prepared)            switches to the new version (ab: the symlink swap;
                                                hooks: ArtifactReboot)
    async commit(update, prepared)              makes it final (hooks: ArtifactCommit, whose Enter
                                                scripts are a health check); raising means not committed
    async rollback(update, prepared)            back to the previous version. Idempotent, and safe
                                                whatever step the update reached (after a kill -9 too)
    async failure(update, prepared)             the update ended without its version active
                                                (hooks: ArtifactFailure); best effort

Each raises InstallError (one safe line) when a step fails. The pipeline (edge.updates.pipeline)
calls them in order and keeps the update record, which is what says which version is
installed (installers keep no state of their own beyond what they install).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol

import msgspec

from edge.errors import EdgeError

Prepared = dict[str, Any]


class Update(msgspec.Struct, frozen=True, kw_only=True):
    """The update an installer works on: which artifact, which version, which one it replaces."""

    name: str
    version: str
    previous: str | None = None


class InstallError(EdgeError):
    """A step of an installer failed; the message is one line, safe to report."""


class Installer(Protocol):
    async def download(self, fetch: Callable[[], Awaitable[Path]], update: Update) -> Path: ...

    async def install(self, artifact: Path, update: Update) -> Prepared: ...

    async def activate(self, update: Update, prepared: Prepared) -> None: ...

    async def commit(self, update: Update, prepared: Prepared) -> None: ...

    async def rollback(self, update: Update, prepared: Prepared) -> None: ...

    async def failure(self, update: Update, prepared: Prepared) -> None: ...
