"""Registering a repository: `mahavishnu repo add` and `mahavishnu up --index PATH` (one RepoAdded event each)."""

from __future__ import annotations

from pathlib import Path

from core.events import RepoAdded, RepoRemoved
from core.store import EventStore
from projections.codeindex.gitread import open_repository
from projections.codeindex.repos import RepositoryRefused, default_name, load_registry, parse_location


async def add_repository(
    store: EventStore, text: str, *, cwd: Path, name: str | None = None, branch: str = "", actor: str = "control"
) -> RepoAdded:
    """Check and register the repository at `text` (a path or URL); RepositoryRefused/RepositoryError say why not."""
    location = parse_location(text, cwd=cwd)
    if not location.remote:
        open_repository(location.location)  # a missing path or a directory that is not a repository, by name
    registry = await load_registry(store)
    chosen = name or default_name(location)
    registry.check_new(chosen, location)
    event = RepoAdded(repo=chosen, location=location.location, branch=branch, remote=location.remote, actor=actor)
    await store.append(event)
    return event


async def remove_repository(store: EventStore, name: str, *, actor: str = "control") -> RepoRemoved:
    registry = await load_registry(store)
    if name not in registry.repos:
        known = ", ".join(sorted(registry.repos)) or "none"
        raise RepositoryRefused(f"no repository named {name!r} is registered (registered: {known})")
    event = RepoRemoved(repo=name, actor=actor)
    await store.append(event)
    return event


async def register_at_start(store: EventStore, text: str) -> str:
    """`up --index PATH`: register it unless it is registered already; a line for up's banner."""
    location = parse_location(text, cwd=Path.cwd())
    registry = await load_registry(store)
    known = next((r for r in registry.repos.values() if r.location == location.location), None)
    if known is not None:
        return f"  index     {known.name}: {known.location} (registered already)"
    event = await add_repository(store, text, cwd=Path.cwd())
    return f"  index     {event.repo}: {event.location} (registered)"
