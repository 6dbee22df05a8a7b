"""One update's life on the device: verify -> download -> install -> switch -> health check -> commit | roll back.

    record = await run_update(records, installer, request, verify=..., download=..., ...)

`verify` and `download` are the two steps that need the mesh (edge.updates.trust and
edge.updates.download bound to the agent's connection by edge.updates.handler); they are
parameters so the rest runs on plain files. The update record (edge.updates.record) is
written before each step, so a kill -9 anywhere leaves a row that `recover` at the next
start brings to an end:

- refused (a check failed) and failed (an error before the switch) change nothing: the
  installed version stays active;
- once switched, the update commits only if the health check (a command line) and the
  installer's commit (hooks: the ArtifactCommit scripts) pass within `commit_timeout`;
  anything else switches back: rolled_back.

Only a commit moves the installed version (the anti-rollback counter), in the same
transaction as the record's `committed`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol

import msgspec

from core.updates.states import UpdateState
from edge.errors import EdgeError
from edge.lifecycle import one_line
from edge.updates.errors import UpdateRefused
from edge.updates.installers import Installer, Update
from edge.updates.process import run_bounded
from edge.updates.record import SWITCHED, Record, Records

log = logging.getLogger("mahavishnu.agent.updates")

STOPPED = "the agent stopped before the update was committed"


class Target(Protocol):
    """What the verifier vouches for (edge.updates.trust.VerifiedTarget has these and more)."""

    @property
    def length(self) -> int: ...

    @property
    def sha256(self) -> str: ...


# verify(name=, version=, installed_version=, allow_downgrade=, installed=) -> Target, or UpdateRefused
Verify = Callable[..., Awaitable[Target]]
# download(target, dest) -> the file at dest, its length and hash checked, or UpdateRefused
Download = Callable[[Any, Path], Awaitable[Path]]


class Request(msgspec.Struct, frozen=True, kw_only=True):
    """An update.install command: which artifact and version, and whether it may be older than the installed one."""

    command_id: str
    name: str
    version: str
    allow_downgrade: bool = False


class Checks(msgspec.Struct, frozen=True, kw_only=True):
    """What decides a commit: the health check's argv (() for none) and the time it and the commit may take."""

    health_check: tuple[str, ...] = ()
    commit_timeout: float = 60.0


async def run_update(
    records: Records,
    installer: Installer,
    request: Request,
    *,
    verify: Verify,
    download: Download,
    downloads: Path,
    checks: Checks,
) -> Record:
    """Run the update of `request` to its end and return its record; see the module docstring.

    A command seen before returns its record as it is (ended) or as `recover` ends it: the
    command's ledger already keeps it from running twice, and this keeps it so without one.
    A cancellation (the command's timeout, the agent stopping) ends the update too, then propagates.
    """
    record = await records.begin(request.command_id, request.name, request.version)
    if record.ended:
        return record
    if record.state != UpdateState.DOWNLOADING:
        return await end_stopped(records, installer, record)
    artifact = downloads / f"{request.name}-{request.version}.artifact"
    try:
        return await _run(records, installer, request, record, verify, download, artifact, checks)
    except asyncio.CancelledError:
        current = records.get(request.command_id)
        if current is not None and not current.ended:
            await asyncio.shield(end_stopped(records, installer, current, reason="the update was stopped"))
        raise
    finally:
        with contextlib.suppress(OSError):
            artifact.unlink(missing_ok=True)


async def _run(
    records: Records,
    installer: Installer,
    request: Request,
    record: Record,
    verify: Verify,
    download: Download,
    artifact: Path,
    checks: Checks,
) -> Record:
    update = Update(name=request.name, version=request.version, previous=record.previous)
    kept = f"{record.previous or 'the installed version'} stays active"
    try:
        target = await verify(
            name=request.name,
            version=request.version,
            installed_version=record.previous,  # the anti-rollback counter
            allow_downgrade=request.allow_downgrade,
            installed=records.installed(),  # for the target's depends
        )
        artifact.parent.mkdir(parents=True, exist_ok=True)
        downloaded = await installer.download(lambda: download(target, artifact), update)
    except UpdateRefused as refused:
        return await records.move(record, UpdateState.REFUSED, reason=str(refused), refusal=str(refused.refusal))
    except Exception as exc:  # the mesh, the disk, a Download script: nothing was installed
        return await records.move(record, UpdateState.FAILED, reason=f"download failed ({_why(exc)}); {kept}")

    record = await records.move(record, UpdateState.INSTALLING)
    try:
        prepared = await installer.install(downloaded, update)
    except Exception as exc:  # nothing was switched: tell the installer, keep what runs
        await _quietly(installer.rollback(update, {}))
        await _quietly(installer.failure(update, {}))
        return await records.move(record, UpdateState.FAILED, reason=f"install failed ({_why(exc)}); {kept}")

    record = await records.move(record, UpdateState.REBOOTING, prepared=prepared)
    try:
        await installer.activate(update, prepared)
        record = await records.move(record, UpdateState.COMMITTING)
        problem = await _healthy_and_committed(installer, update, prepared, checks)
    except Exception as exc:
        problem = f"the switch failed ({_why(exc)})"
    if problem:
        return await roll_back(records, installer, record, problem)
    committed = await records.commit(record)
    log.info("update committed", extra={"artifact": request.name, "version": request.version})
    return committed


async def _healthy_and_committed(installer: Installer, update: Update, prepared: dict[str, Any], checks: Checks) -> str:
    """ "" when the health check and the installer's commit both passed within commit_timeout; else why not."""
    deadline = asyncio.timeout(checks.commit_timeout)
    try:
        async with deadline:
            if checks.health_check:
                env = {
                    "MAHAVISHNU_ARTIFACT_NAME": update.name,
                    "MAHAVISHNU_ARTIFACT_VERSION": update.version,
                    "MAHAVISHNU_PREVIOUS_VERSION": update.previous or "",
                }
                # The deadline around it ends a hung check (and kills it); its own is only a backstop.
                ran = await run_bounded(checks.health_check, env=env, timeout=checks.commit_timeout + 1)
                if not ran.ok:
                    return f"the health check failed ({ran.summary()})"
            await installer.commit(update, prepared)
    except TimeoutError:
        if deadline.expired():
            return f"the health check and commit did not pass within commit_timeout ({checks.commit_timeout:g} s)"
        raise
    except EdgeError as exc:
        return f"the commit failed ({_why(exc)})"
    return ""


async def roll_back(records: Records, installer: Installer, record: Record, reason: str) -> Record:
    """Switch back to the previous version; rolled_back, or failed when even that did not work."""
    update = Update(name=record.name, version=record.version, previous=record.previous)
    try:
        await installer.rollback(update, record.prepared)
    except Exception as exc:
        failed = f"{reason}; the rollback failed too ({_why(exc)}): the device needs a look"
        log.error("update rollback failed", extra={"artifact": record.name, "reason": failed})
        return await records.move(record, UpdateState.FAILED, reason=failed)
    await _quietly(installer.failure(update, record.prepared))
    log.warning("update rolled back", extra={"artifact": record.name, "version": record.version, "reason": reason})
    return await records.move(record, UpdateState.ROLLED_BACK, reason=reason)


async def end_stopped(records: Records, installer: Installer, record: Record, *, reason: str = STOPPED) -> Record:
    """End an update an agent left unfinished: switched ones are rolled back, the others failed (nothing switched)."""
    if record.state in SWITCHED:
        return await roll_back(records, installer, record, f"{reason}; rolled back")
    if record.state == UpdateState.INSTALLING:  # an install cut short: let the installer tidy up
        update = Update(name=record.name, version=record.version, previous=record.previous)
        await _quietly(installer.rollback(update, {}))
        await _quietly(installer.failure(update, {}))
    kept = f"{record.previous or 'the installed version'} stays active"
    return await records.move(record, UpdateState.FAILED, reason=f"{reason} (while {record.state}); {kept}")


async def recover(records: Records, installer: Installer) -> list[Record]:
    """At the agent's start: end every update a stopped agent left unfinished (Mender after a failed reboot)."""
    return [await end_stopped(records, installer, record) for record in records.unended()]


async def _quietly(step: Awaitable[None]) -> None:
    """A best-effort step on a path that has failed already: its own failure is logged, not raised."""
    try:
        await step
    except Exception as exc:
        log.warning("an update's clean-up step failed", extra={"reason": _why(exc)})


def _why(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, EdgeError) else one_line(exc)
