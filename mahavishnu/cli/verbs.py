"""Every verb of `mahavishnu`: its module, its one-line help, whether a device's install has it (pure data).

`mahavishnu --help` reads only this table; a verb's module is imported when that verb
runs, so no verb pays for another's imports (the supervisor, asyncssh, pygit2, ...).

Each verb module has `add(parser)`, which adds the verb's arguments and actions and sets
`handler` on each: one shape for all,

    handler(home: Home, settings: Settings, args: argparse.Namespace) -> int | Awaitable[int]

`home` and `settings` are the mesh's (`--home`, `$MAHAVISHNU_HOME`, its mahavishnu.toml
with the environment's overrides); an async handler runs on uvloop where it is installed.

An action that needs no state directory of a mesh (the device's `agent csr`, `provision` and `run`,
whose agent.toml says everything) sets `local` instead,

    local(args: argparse.Namespace) -> int | Awaitable[int]

which main runs without reading mahavishnu.toml or loading the control plane's modules;
one that needs the mesh only sometimes (`agent run --simulate`) asks `mesh_of(args)`.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

if TYPE_CHECKING:
    from core.config import Settings
    from mahavishnu.runtime.home import Home

Handler: TypeAlias = Callable[["Home", "Settings", argparse.Namespace], int | Awaitable[int]]
Local: TypeAlias = Callable[[argparse.Namespace], int | Awaitable[int]]
Adder: TypeAlias = Callable[[argparse.ArgumentParser], Any]


def mesh_of(args: argparse.Namespace) -> tuple[Home, Settings]:
    """The mesh's state directory (`--home`, else $MAHAVISHNU_HOME or ./.mahavishnu) and its settings.

    Imported here, when asked: `--help` and the `local` actions load neither. ConfigError
    when mahavishnu.toml or the environment's overrides are wrong.
    """
    from core.config import home_dir, settings_for
    from mahavishnu.runtime.home import Home

    root = Path(args.home).resolve() if args.home else home_dir(os.environ)
    return Home(root), settings_for(root, os.environ)


@dataclass(frozen=True)
class Verb:
    module: str  # the verb's module; its add(parser) adds the verb's arguments
    help: str
    on_device: bool = False  # offered by the edge install (nats-py and msgspec only)


VERBS: dict[str, Verb] = {
    "up": Verb("mahavishnu.cli.up", "create the mesh once, run it in the foreground until Ctrl-C"),
    "init": Verb("mahavishnu.cli.init", "create the state directory (CA, certificates, configuration) only"),
    "cluster": Verb("mahavishnu.cli.cluster", "a cluster across hosts: write one node bundle per host"),
    "status": Verb("mahavishnu.cli.status", "check that the mesh answers"),
    "env": Verb("mahavishnu.cli.env", "print the control identity's URL and TLS files"),
    "events": Verb("mahavishnu.cli.events", "read the streams"),
    "agent": Verb("mahavishnu.cli.agent", "device-side commands", on_device=True),
    "ca": Verb("mahavishnu.cli.ca", "the certificate authority of the mesh"),
    "device": Verb("mahavishnu.cli.device", "enrol, list, tag, revoke and rotate devices (the mesh must be up)"),
    "fleet": Verb("mahavishnu.cli.fleet", "claims: a batch of devices provisions itself (the mesh must be up)"),
    "operator": Verb("mahavishnu.cli.operator", "people who query the mesh, and their roles"),
    "cmd": Verb("mahavishnu.cli.cmd", "send commands to devices and follow them (the mesh must be up)"),
    "campaign": Verb("mahavishnu.cli.campaign", "fleet campaigns: a command for many devices, paced and gated"),
    "artifact": Verb("mahavishnu.cli.artifact", "software artifacts for updates: add, list, show, remove, sign"),
    "projections": Verb("mahavishnu.cli.projections", "the read models: status, parked events, rebuild"),
    "db": Verb("mahavishnu.cli.db", "the read models' encryption"),
    "audit": Verb("mahavishnu.cli.audit", "search, verify and export the audit trail"),
    "backup": Verb("mahavishnu.cli.backup", "snapshot the streams and the mesh's files into DIR (mesh up)"),
    "restore": Verb("mahavishnu.cli.restore", "restore the streams from a backup DIR (mesh stopped)"),
    "code": Verb("mahavishnu.cli.code", "query the code index: symbols, full text, context, files, repositories"),
    "repo": Verb("mahavishnu.cli.repo", "repositories the code index polls: add, list, remove"),
    "slo": Verb("mahavishnu.cli.slo", "service-level objectives, from the metrics Prometheus keeps"),
    "erase": Verb("mahavishnu.cli.erase", "erase personal data for good (crypto-shredding)"),
    "site": Verb("mahavishnu.cli.site", "edge sites: a leaf server each, sourced by the hub when linked"),
    "shell": Verb(
        "mahavishnu.cli.shell",
        "an interactive terminal on a device, recorded in the audit trail (admin and operator roles)",
    ),
}
