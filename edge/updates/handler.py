"""The `update.install` command: {name, version, allow_downgrade?} -> the update's result.

Registered by the agent only when agent.toml has an [update] section (edge.agent, which
imports this module lazily, at start). The agent builds it once its state file is open:
the handler keeps its update record in that file (edge.updates.record), beside the
command ledger, and finds the command's id and the agent's connection in its
HandlerContext (`command_id`, `connection`).

Outcomes: committed is the command's result (CommandSucceeded, with `previous`: what a
campaign's rollback reinstalls); refused, rolled_back and failed are a CommandFailed whose
error starts with "update refused (<refusal>)", "update rolled back" or "update failed": the
update did not take, so a campaign counts it against its error gates and abort rules.
After a kill -9 the agent's start ends the update (edge.updates.pipeline.recover) and
`recovered` reports that ending when the command is delivered again.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.updates.naming import artifact_name, artifact_version, target_path
from core.updates.states import INSTALL_COMMAND, UpdateState
from edge.agent_config import UpdateConfig
from edge.builtin import only
from edge.errors import CommandError, InvalidArguments
from edge.handlers import HandlerContext
from edge.updates.installers import Installer
from edge.updates.pipeline import Checks, Download, Request, Verify, recover, run_update
from edge.updates.record import Record, Records

# The most an update may take from the handler's side; the command's own timeout_s (which
# the sender sets to cover the download, the install and commit_timeout) is usually smaller.
MAX_UPDATE_S = 24 * 3600.0


@dataclass
class InstallHandler:
    """The update.install handler of one agent; see the module docstring."""

    settings: UpdateConfig
    device_id: str
    records: Records
    installer: Installer
    name: str = INSTALL_COMMAND
    timeout_s: float = MAX_UPDATE_S

    def validate(self, args: dict[str, Any]) -> None:
        only(self.name, args, ("name", "version", "allow_downgrade"))
        example = "e.g. {'name': 'pump-fw', 'version': '1.4.2'}"
        for key, check in (("name", artifact_name), ("version", artifact_version)):
            value = args.get(key)
            if not isinstance(value, str):
                raise InvalidArguments(f"{self.name} needs {key!r}, a string, {example}")
            try:
                check(value)
            except ValueError as exc:
                raise InvalidArguments(f"{self.name}: {exc}") from None
        if not isinstance(args.get("allow_downgrade", False), bool):
            raise InvalidArguments(f"{self.name}: 'allow_downgrade' must be true or false")

    async def run(self, args: dict[str, Any], context: HandlerContext) -> Any:
        if not context.command_id:
            raise CommandError(f"{self.name} needs the command's id in its context; this agent is too old")
        request = Request(
            command_id=context.command_id,
            name=args["name"],
            version=args["version"],
            allow_downgrade=args.get("allow_downgrade", False),
        )
        verify, download = self.steps(context.connection)
        record = await run_update(
            self.records,
            self.installer,
            request,
            verify=verify,
            download=download,
            downloads=self.settings.downloads,
            checks=Checks(health_check=self.settings.health_check, commit_timeout=self.settings.commit_timeout),
        )
        return outcome(record)

    def recovered(self, command_id: str) -> Any:
        """How the update of a command the agent was running when it died ended; None when it has no record."""
        record = self.records.get(command_id)
        if record is None or not record.ended:
            return None
        try:
            return outcome(record)
        except CommandError as failed:
            return failed

    def software(self) -> dict[str, str]:
        """The installed version of each artifact, for ReportedState's "software"."""
        return self.records.installed()

    def steps(self, connection: Any) -> tuple[Verify, Download]:
        """verify and download over the agent's connection (edge.updates.trust, edge.updates.download)."""
        if connection is None:
            raise CommandError(f"{self.name} needs the agent's connection to the mesh; it has none now, send it again")
        settings, device_id = self.settings, self.device_id

        async def verify(**request: Any) -> Any:
            trust = importlib.import_module("edge.updates.trust")  # python-tuf loads only while an update runs
            return await trust.verify_target(connection, settings.trust, device_type=settings.device_type, **request)

        async def download(target: Any, dest: Path) -> Path:
            downloader = importlib.import_module("edge.updates.download")
            path: Path = await downloader.download(
                connection,
                device_id=device_id,
                target=target_path(target.name, target.version),
                dest=dest,
                length=target.length,
                sha256=target.sha256,
            )
            return path

        return verify, download


def outcome(record: Record) -> dict[str, Any]:
    """The command's result when committed; CommandError (CommandFailed) for refused, rolled back and failed."""
    if record.state == UpdateState.REFUSED:
        raise CommandError(record.reason)
    if record.state == UpdateState.ROLLED_BACK:
        raise CommandError(f"update rolled back: {record.reason}")
    if record.state == UpdateState.FAILED:
        raise CommandError(f"update failed: {record.reason}")
    return record.result()


async def start(settings: UpdateConfig, device_id: str, records: Records) -> InstallHandler:
    """The handler of an agent with [update]; first ends what a stopped agent left unfinished."""
    from edge.updates.installers.select import installer_for

    installer = installer_for(settings)
    await recover(records, installer)
    return InstallHandler(settings=settings, device_id=device_id, records=records, installer=installer)
