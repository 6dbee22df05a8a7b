"""update.install on SSH hosts: the gateway verifies and downloads, then installs on the host over SSH.

A host registered with an update dir (`device add-ssh ... --device-type T --update-dir DIR`)
takes the agent's `update.install` {name, version, allow_downgrade?}, run by the agent's own
handler and pipeline (edge.updates.handler, edge.updates.pipeline) with an installer that
works on the host:

1. verify: the gateway checks the target against the signed metadata (edge.updates.trust,
   its trusted state in the gateway's trust folder, one at a time since every host shares
   it) for the host's device type and installed version;
2. download: the gateway fetches the artifact into a local file (edge.updates.download,
   through the consumer ota-<host id>), length and SHA-256 checked;
3. install (RemoteSlots): the archive's members are checked here (the agent's rules,
   edge.updates.installers.archive) so a bad archive is refused before anything on the host
   changes; then the file is copied over SFTP to DIR/.incoming.tar.gz and unpacked on the
   host into the inactive slot (mahavishnu.gateways.ssh.remote_ab);
4. activate: `current` is switched atomically on the host;
5. commit: the host's health check runs over SSH, within commit_timeout (the pipeline's
   deadline; a check still running then is killed on the host); a failure switches back.

The outcomes are the agent's: committed is the command's result, refused / rolled back /
failed a CommandFailed ("update refused (<refusal>): ...", "update rolled back: ...",
"update failed: ..."). Each host's update records and installed versions (the anti-rollback
baseline, reported as "software") are in a state file of its own,
$MAHAVISHNU_HOME/ssh/updates/<host>.lmdb (edge.updates.record's tables), written ahead of
each step, so an update a stopped gateway left unfinished is ended (switched back) when the
host's loop starts again. One update per host runs at a time.
"""

from __future__ import annotations

import asyncio
import hashlib
import tarfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.events import SshHostRegistered
from core.redaction import redact
from edge.agent_config import UpdateConfig
from edge.handlers import HandlerContext
from edge.state import AgentState
from edge.updates.handler import InstallHandler
from edge.updates.installers import InstallError, Prepared, Update
from edge.updates.installers.archive import problems
from edge.updates.pipeline import Download, Verify, recover
from edge.updates.record import Record, Records
from mahavishnu.gateways.ssh import remote_ab
from mahavishnu.gateways.ssh.handlers import SshHost
from mahavishnu.gateways.ssh.hosts import CappedOutput, last_line
from mahavishnu.gateways.ssh.pool import run_command, upload

OUTPUT_CAP = 4096  # bytes kept of what a step on the host prints: its last line is what a failure quotes
_CHUNK = 1 << 20

# verify and download for one host (tests give fixed ones; None: the real ones, see SshInstallHandler.steps)
Steps = Callable[[SshHostRegistered], tuple[Verify, Download]]


def check_archive(artifact: Path) -> str:
    """The artifact's SHA-256 once its members pass the A/B installer's checks; InstallError otherwise."""
    try:
        with tarfile.open(artifact, mode="r:gz") as tar:
            members = tar.getmembers()
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise InstallError(
            f"the artifact {artifact.name} cannot be read ({exc}); it must be a .tar.gz (docs/updates.md)"
        ) from None
    wrong = problems(members)
    if wrong:
        raise InstallError(f"the artifact {artifact.name} is refused: {'; '.join(wrong[:3])}")
    digest = hashlib.sha256()
    with artifact.open("rb") as file:
        while chunk := file.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class RemoteSlots:
    """The A/B installer (edge.updates.installers' protocol) on a host, over the gateway's pooled SSH connections."""

    host: SshHost
    update_dir: str
    health_check: str = ""

    async def download(self, fetch: Callable[[], Awaitable[Path]], update: Update) -> Path:
        return await fetch()

    async def install(self, artifact: Path, update: Update) -> Prepared:
        sha256 = await asyncio.to_thread(check_archive, artifact)  # refused here: the host is not touched
        line = remote_ab.install(self.update_dir, sha256=sha256, name=update.name, version=update.version)
        async with self.host.session() as conn:
            await upload(conn, artifact, remote_ab.upload_path(self.update_dir))
            code, out, err, signal = await run_command(conn, line, cap=OUTPUT_CAP)
        if code != 0 or signal:
            raise InstallError(f"unpacking on the host failed ({_ended(code, signal)}{_said(out, err)})")
        try:
            slot, previous = remote_ab.parse_installed(out.text())
        except ValueError as exc:
            raise InstallError(str(exc)) from None
        return {"slot": slot, "previous_slot": previous}

    async def activate(self, update: Update, prepared: Prepared) -> None:
        await self._run("switching current", remote_ab.point(self.update_dir, prepared["slot"]))

    async def commit(self, update: Update, prepared: Prepared) -> None:
        """The host's health check; raising means not committed (the pipeline rolls back)."""
        if not self.health_check:
            return
        line = remote_ab.health_check(
            self.health_check,
            name=update.name,
            version=update.version,
            previous=update.previous,
            update_dir=self.update_dir,
        )
        async with self.host.session() as conn:
            code, out, err, signal = await run_command(conn, line, cap=OUTPUT_CAP)
        if code != 0 or signal:
            raise InstallError(f"the health check {_ended(code, signal)} on the host{_said(out, err)}")

    async def rollback(self, update: Update, prepared: Prepared) -> None:
        if "slot" not in prepared:
            return  # install never got as far as a slot: nothing on the host to undo
        line = remote_ab.rollback(self.update_dir, slot=prepared["slot"], previous_slot=prepared.get("previous_slot"))
        await self._run("switching back", line)

    async def failure(self, update: Update, prepared: Prepared) -> None:
        return None  # as the agent's A/B: the inactive slot is replaced by the next install

    async def _run(self, what: str, line: str) -> None:
        async with self.host.session() as conn:
            code, out, err, signal = await run_command(conn, line, cap=OUTPUT_CAP)
        if code != 0 or signal:
            raise InstallError(f"{what} on the host failed ({_ended(code, signal)}{_said(out, err)})")


def _ended(code: int, signal: str) -> str:
    return f"killed by {signal}" if signal else f"exited {code}"


def _said(out: CappedOutput, err: CappedOutput) -> str:
    """The last line the host printed (stderr first), redacted: it is reported and audited."""
    return redact(last_line(err) or last_line(out))


@dataclass(kw_only=True)
class SshInstallHandler(InstallHandler):
    """The agent's update.install handler, one update per host at a time, verifying one at a time per gateway."""

    lock: asyncio.Lock
    verify_lock: asyncio.Lock
    fixed_steps: tuple[Verify, Download] | None = None

    async def run(self, args: dict[str, Any], context: HandlerContext) -> Any:
        async with self.lock:
            return await super().run(args, context)

    def steps(self, connection: Any) -> tuple[Verify, Download]:
        """The agent's steps over the gateway's connection (trust and download loaded lazily), or the fixed ones."""
        if self.fixed_steps is not None:
            return self.fixed_steps
        verify, download = super().steps(connection)
        lock = self.verify_lock

        async def verify_one_at_a_time(**request: Any) -> Any:
            async with lock:  # every host's verification refreshes the same trusted metadata
                return await verify(**request)

        return verify_one_at_a_time, download


class SshUpdates:
    """The gateway's side of updates: each host's record file and lock, the trust folder, the steps.

    `root` is $MAHAVISHNU_HOME/ssh; `steps`, when given, replaces verify and download (tests).
    """

    def __init__(self, root: Path, trust_dir: Path, *, steps: Steps | None = None) -> None:
        self.root = root
        self.trust_dir = trust_dir
        self.steps = steps
        self._records: dict[str, Records] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._verify_lock = asyncio.Lock()

    def records(self, device_id: str) -> Records:
        """The host's update records, its state file opened at first use (0600, in a 0700 folder)."""
        if device_id not in self._records:
            folder = self.root / "updates"
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            self._records[device_id] = Records(AgentState(folder / f"{device_id}.lmdb"))
        return self._records[device_id]

    def software(self, device_id: str) -> dict[str, str]:
        """The host's installed versions, for its ReportedState's "software"."""
        return self.records(device_id).installed()

    def installer(self, host: SshHost, registration: SshHostRegistered) -> RemoteSlots:
        return RemoteSlots(host=host, update_dir=registration.update_dir, health_check=registration.health_check)

    def handler(self, host: SshHost, registration: SshHostRegistered) -> SshInstallHandler:
        device_id = registration.device_id
        downloads = self.root / "downloads" / device_id
        downloads.mkdir(mode=0o700, parents=True, exist_ok=True)
        settings = UpdateConfig(
            device_type=registration.device_type,
            installer="ssh-ab",
            folder=Path(registration.update_dir),  # on the host, not here: RemoteSlots uses it
            trust=self.trust_dir,
            downloads=downloads,
            health_check=(),  # the host's check runs on the host, as RemoteSlots.commit
            commit_timeout=registration.commit_timeout,
        )
        return SshInstallHandler(
            settings=settings,
            device_id=device_id,
            records=self.records(device_id),
            installer=self.installer(host, registration),
            lock=self._locks.setdefault(device_id, asyncio.Lock()),
            verify_lock=self._verify_lock,
            fixed_steps=self.steps(registration) if self.steps is not None else None,
        )

    async def recover(self, host: SshHost, registration: SshHostRegistered) -> list[Record]:
        """End the updates of this host a stopped gateway left unfinished (switched ones are switched back)."""
        async with self._locks.setdefault(registration.device_id, asyncio.Lock()):
            return await recover(self.records(registration.device_id), self.installer(host, registration))

    def close(self) -> None:
        for records in self._records.values():
            records.state.close()
        self._records.clear()
