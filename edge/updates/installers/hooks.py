"""The hook-script installer: the device's own scripts do the work, in Mender's states.

Scripts live in one folder and are named as Mender names its state scripts:

    <State>_<Enter|Leave|Error>_<NN>[_<what>]      e.g. ArtifactInstall_Enter_00_stop-pump

States: Download, ArtifactInstall, ArtifactReboot, ArtifactCommit, ArtifactRollback,
ArtifactFailure. Each state runs its Enter scripts in order of name, then its Leave
scripts; a script that exits non-zero or outlives the timeout stops the state: its Error
scripts run (their own failures only logged) and the step fails. Download's Enter and
Leave run around the agent's own download; ArtifactInstall's scripts install the artifact;
ArtifactReboot's switch to it (restart a service, or reboot: the agent, started again,
then finds the update switched and uncommitted, and rolls it back; see docs/updates.md);
ArtifactCommit's Enter scripts are the health check when agent.toml names no other.

A script gets a small environment, never the agent's own:
    MAHAVISHNU_ARTIFACT            the downloaded file (from ArtifactInstall on)
    MAHAVISHNU_ARTIFACT_NAME       the artifact's name
    MAHAVISHNU_ARTIFACT_VERSION    the version being installed
    MAHAVISHNU_PREVIOUS_VERSION    the version it replaces ("" for none)
    MAHAVISHNU_UPDATE_STATE        the state the script runs in
and PATH. Its output is kept (the last 4 KiB, redacted) for the log and the error's one line.
Files that do not match the naming (README, backups) are ignored; a matching file that is
not executable fails its state, since skipping it silently would skip a step.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Awaitable, Callable
from pathlib import Path

from edge.updates.installers import InstallError, Prepared, Update
from edge.updates.process import run_bounded

log = logging.getLogger("mahavishnu.agent.updates")

STATES = ("Download", "ArtifactInstall", "ArtifactReboot", "ArtifactCommit", "ArtifactRollback", "ArtifactFailure")
ACTIONS = ("Enter", "Leave", "Error")
SCRIPT = re.compile(rf"(?P<state>{'|'.join(STATES)})_(?P<action>{'|'.join(ACTIONS)})_(?P<order>\d\d)(?:_[\w.-]+)?")


def scripts(folder: Path, state: str, action: str) -> list[Path]:
    """The scripts of `state`/`action` in `folder`, in the order they run (by name)."""
    try:
        entries = sorted(os.listdir(folder))
    except FileNotFoundError:
        return []
    found = []
    for entry in entries:
        match = SCRIPT.fullmatch(entry)
        if match and match["state"] == state and match["action"] == action:
            found.append(folder / entry)
    return found


class HooksInstaller:
    """Runs the scripts of `folder` in Mender's states, each with `timeout` seconds; see the module docstring."""

    def __init__(self, folder: Path, *, timeout: float) -> None:
        self.folder = folder
        self.timeout = timeout

    async def download(self, fetch: Callable[[], Awaitable[Path]], update: Update) -> Path:
        await self._enter("Download", update, None)
        try:
            artifact = await fetch()
        except BaseException:
            await self._errors("Download", update, None)
            raise
        await self._leave("Download", update, artifact)
        return artifact

    async def install(self, artifact: Path, update: Update) -> Prepared:
        await self.state("ArtifactInstall", update, artifact)
        return {"artifact": str(artifact)}

    async def activate(self, update: Update, prepared: Prepared) -> None:
        await self.state("ArtifactReboot", update, _artifact(prepared))

    async def commit(self, update: Update, prepared: Prepared) -> None:
        await self.state("ArtifactCommit", update, _artifact(prepared))

    async def rollback(self, update: Update, prepared: Prepared) -> None:
        await self.state("ArtifactRollback", update, _artifact(prepared))

    async def failure(self, update: Update, prepared: Prepared) -> None:
        try:
            await self.state("ArtifactFailure", update, _artifact(prepared))
        except InstallError as exc:  # the update has failed already: this only tells the scripts
            log.warning("ArtifactFailure scripts failed", extra={"reason": str(exc)})

    async def state(self, state: str, update: Update, artifact: Path | None) -> None:
        """Run `state`'s Enter then Leave scripts; on a failure its Error scripts, then InstallError."""
        await self._enter(state, update, artifact)
        await self._leave(state, update, artifact)

    async def _enter(self, state: str, update: Update, artifact: Path | None) -> None:
        await self._run_or_error(state, "Enter", update, artifact)

    async def _leave(self, state: str, update: Update, artifact: Path | None) -> None:
        await self._run_or_error(state, "Leave", update, artifact)

    async def _run_or_error(self, state: str, action: str, update: Update, artifact: Path | None) -> None:
        for script in scripts(self.folder, state, action):
            problem = await self._run(script, state, update, artifact)
            if problem:
                await self._errors(state, update, artifact)
                raise InstallError(f"{state}: {script.name} {problem}")

    async def _errors(self, state: str, update: Update, artifact: Path | None) -> None:
        for script in scripts(self.folder, state, "Error"):
            problem = await self._run(script, state, update, artifact)
            if problem:
                log.warning("an Error script failed", extra={"script": script.name, "reason": problem})

    async def _run(self, script: Path, state: str, update: Update, artifact: Path | None) -> str:
        """Run one script; "" when it succeeded, else what went wrong (one redacted line)."""
        if not os.access(script, os.X_OK):
            return "is not executable; chmod +x it (or rename it so it does not match the naming)"
        env = {
            "MAHAVISHNU_ARTIFACT": str(artifact or ""),
            "MAHAVISHNU_ARTIFACT_NAME": update.name,
            "MAHAVISHNU_ARTIFACT_VERSION": update.version,
            "MAHAVISHNU_PREVIOUS_VERSION": update.previous or "",
            "MAHAVISHNU_UPDATE_STATE": state,
        }
        ran = await run_bounded([str(script)], env=env, timeout=self.timeout, cwd=self.folder)
        log.info(
            "hook script ran",
            extra={"script": script.name, "code": ran.code, "output": ran.output[-1000:]},
        )
        return "" if ran.ok else ran.summary()


def _artifact(prepared: Prepared) -> Path | None:
    value = prepared.get("artifact")
    return Path(value) if value else None
