"""`mahavishnu repo add|list|remove`: the repositories the code index polls (the mesh must be up)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from core.config import Settings
from mahavishnu.cli.mesh import control_store
from mahavishnu.runtime.home import Home
from projections.codeindex.registering import add_repository, remove_repository
from projections.codeindex.repos import load_registry


def add(repo: argparse.ArgumentParser) -> None:
    actions = repo.add_subparsers(dest="repo_command", required=True, metavar="ACTION")
    adding = actions.add_parser("add", help="register a local repository (read in place) or a remote URL (mirrored)")
    adding.add_argument("location", metavar="PATH_OR_URL")
    adding.add_argument("--name", help="the repository's name (default: the last part of its path)")
    adding.add_argument("--branch", default="", help="the branch to index (default: HEAD)")
    adding.set_defaults(handler=_add)
    listing = actions.add_parser("list", help="registered repositories, with the commit last indexed")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(handler=_list)
    remove = actions.add_parser("remove", help="stop polling a repository and drop its index")
    remove.add_argument("name")
    remove.set_defaults(handler=_remove)


async def _add(home: Home, settings: Settings, args: argparse.Namespace) -> int:
    async with control_store(home, settings, "repo") as store:
        event = await add_repository(store, args.location, cwd=Path.cwd(), name=args.name, branch=args.branch)
    kind = "remote, mirrored" if event.remote else "local, read in place"
    print(f"{event.repo}: {event.location} ({kind}); the poller indexes it within one poll interval")
    return 0


async def _list(home: Home, settings: Settings, args: argparse.Namespace) -> int:
    async with control_store(home, settings, "repo") as store:
        registry = await load_registry(store)
    repos = sorted(registry.repos.values(), key=lambda r: r.name)
    if args.json:
        print(json.dumps([{**vars(r)} for r in repos], indent=2))
        return 0
    for r in repos:
        print(f"{r.name}  {r.location}  branch {r.branch or 'HEAD'}  indexed {r.indexed[:12] or '-'}")
    if not repos:
        print("no repositories: add one with `mahavishnu repo add PATH_OR_URL`")
    return 0


async def _remove(home: Home, settings: Settings, args: argparse.Namespace) -> int:
    async with control_store(home, settings, "repo") as store:
        await remove_repository(store, args.name)
    print(f"{args.name} removed; its index is dropped from the code read model")
    return 0
