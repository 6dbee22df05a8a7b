"""update.install on an SSH host: a real sshd, real SFTP, real files installed on the "host", a real mesh.

verify and download are local stand-ins here (tests.edge.updates.kit: the signed metadata and
the object store are other parts of the issue); everything after them is the real thing: the
archive check, the copy over SFTP, the unpacking and the `current` swap on the host, the
health check over SSH, the rollback, the record and the reported software.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from core.config import SshSettings
from core.events import ReportedState, SshHostRegistered
from core.store import EventStore
from core.updates.naming import target_path
from core.updates.states import INSTALL_COMMAND, UpdateState
from core.updates.versions import is_older
from edge.updates import download
from edge.updates.errors import Refusal, UpdateRefused
from edge.updates.pipeline import Download, Verify
from mahavishnu.control import commands
from mahavishnu.gateways.ssh import registration as ssh_devices
from mahavishnu.gateways.ssh.credentials import Credentials
from mahavishnu.gateways.ssh.gateway import ACTOR, SshGateway
from mahavishnu.gateways.ssh.hosts import parse_host_key
from mahavishnu.gateways.ssh.registration import HostUpdates
from mahavishnu.runtime.buckets import ensure_update_buckets
from mahavishnu.updates import artifacts as artifact_store
from tests.edge.updates.kit import LocalSteps, artifact, release
from tests.harness import Mesh
from tests.mahavishnu.sshd import Sshd, start_sshd
from tests.outcomes import follow_outcome
from tests.waiting import eventually

FAST = SshSettings(connect_timeout=5, command_timeout=20, max_output=64 * 1024, idle_timeout=30)
DEVICE_TYPE = "web"
# Healthy when the running slot's VERSION is the version just installed and its STATUS is not "broken".
CHECK = 'test "$(cat "$MAHAVISHNU_UPDATE_DIR/current/VERSION")" = "$MAHAVISHNU_ARTIFACT_VERSION" && ' + (
    '! grep -q broken "$MAHAVISHNU_UPDATE_DIR/current/STATUS" 2>/dev/null || { echo "app is broken" >&2; exit 3; }'
)


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    server = start_sshd(tmp_path_factory.mktemp("sshd"))
    yield server
    server.stop()


@dataclass
class Host:
    device_id: str
    root: Path  # the update dir "on the host" (sshd runs here, as this user)

    def current(self) -> str | None:
        """What `current` runs: its VERSION file, None without one."""
        version = self.root / "current" / "VERSION"
        return version.read_text() if version.exists() else None

    def slot(self) -> str:
        return os.readlink(self.root / "current")

    def tree(self) -> dict[str, Any]:
        """Every file, folder and link under the update dir with what it holds: a change anywhere shows."""
        found: dict[str, Any] = {}
        for folder, dirs, files in os.walk(self.root):
            for name in dirs + files:
                path = Path(folder) / name
                key = str(path.relative_to(self.root))
                if path.is_symlink():
                    found[key] = ("link", os.readlink(path))
                elif path.is_file():
                    found[key] = ("file", path.read_bytes(), path.stat().st_mtime_ns)
                else:
                    found[key] = ("dir",)
        return found


class Steps(LocalSteps):
    """LocalSteps with the verifier's downgrade rule, which the real one (edge.updates.trust) applies."""

    async def verify(self, **request: Any) -> Any:
        installed, version = request["installed_version"], request["version"]
        if installed is not None and is_older(version, installed) and not request["allow_downgrade"]:
            self.asked.append(request)
            raise UpdateRefused(Refusal.DOWNGRADE, f"{version} is older than the installed {installed}")
        return await super().verify(**request)

    def bound(self, registration: SshHostRegistered) -> tuple[Verify, Download]:
        return self.verify, self.download


@pytest.fixture
def artifacts(tmp_path: Path) -> Steps:
    files = {version: release(tmp_path, version) for version in ("1.0", "1.1")}
    broken = artifact(tmp_path / "app-2.0.tar.gz", {"VERSION": b"2.0", "STATUS": b"broken", "bin/run": b"#!/bin/sh\n"})
    escaping = artifact(tmp_path / "app-6.6.tar.gz", {"VERSION": b"6.6", "../../escaped": b"owned"})
    return Steps({**files, "2.0": broken, "6.6": escaping})


async def add_host(
    mesh: Mesh,
    store: EventStore,
    sshd: Sshd,
    tmp_path: Path,
    *,
    check: str = CHECK,
    commit_timeout: float = 5,
    ack_wait_s: float = 30,
) -> Host:
    host = Host(f"ssh-{uuid.uuid4().hex[:8]}", tmp_path / "host" / "opt" / "app")
    await ssh_devices.register(
        mesh.home,
        store,
        host.device_id,
        host="127.0.0.1",
        port=sshd.port,
        user=sshd.user,
        host_key=parse_host_key(sshd.host_key_line),
        trust="pinned",
        credentials=Credentials(sshd.client_key_path),
        allow=[],
        updates=HostUpdates(
            device_type=DEVICE_TYPE, update_dir=str(host.root), health_check=check, commit_timeout=commit_timeout
        ),
        ack_wait_s=ack_wait_s,
    )
    return host


@contextlib.asynccontextmanager
async def serving(mesh: Mesh, store: EventStore, steps: Steps, **options: Any) -> AsyncIterator[SshGateway]:
    gateway = SshGateway(store, mesh.home.root, FAST, update_steps=steps.bound, **options)
    stop = asyncio.Event()
    task = asyncio.create_task(gateway.run(stop))
    try:
        yield gateway
    finally:
        stop.set()
        await task


async def install(
    store: EventStore, host: Host, version: str, *, deadline_s: float = 60, **extra: Any
) -> commands.CommandView:
    args = {"name": "app", "version": version, **extra}
    command = await commands.send(
        store, host.device_id, INSTALL_COMMAND, args, ttl_s=60, timeout_s=300, actor="control"
    )
    return await follow_outcome(store, command, deadline_s=deadline_s)


async def reported(store: EventStore, device_id: str) -> list[ReportedState]:
    subject = f"mesh.evt.device.{device_id}.reported"
    return [s.event async for s in store.read(subject) if isinstance(s.event, ReportedState)]


def running(pid: int) -> bool:
    """Whether `pid` is a live process (a zombie waiting for its parent counts as ended)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def sftp_sessions(sshd: Sshd) -> int:
    return sum("subsystem request for sftp" in line for line in list(sshd.lines))


async def test_an_update_is_copied_installed_switched_checked_and_committed_on_the_host(
    mesh: Mesh, store: EventStore, sshd: Sshd, artifacts: Steps, tmp_path: Path
) -> None:
    host = await add_host(mesh, store, sshd, tmp_path)
    async with serving(mesh, store, artifacts):
        first = await install(store, host, "1.0")
        assert first.state == "succeeded", first
        assert first.result == {"state": "committed", "name": "app", "version": "1.0", "previous": None}
        assert (host.slot(), host.current()) == ("a", "1.0")
        assert (host.root / "current" / "run").resolve() == (host.root / "a" / "bin" / "run").resolve()

        second = await install(store, host, "1.1")
        assert second.result == {"state": "committed", "name": "app", "version": "1.1", "previous": "1.0"}
    assert (host.slot(), host.current()) == ("b", "1.1")
    assert (host.root / "a" / "VERSION").read_text() == "1.0"  # the old slot stays, as on an agent
    assert (host.root / "b.release").read_text().strip() == '{"name": "app", "version": "1.1"}'
    assert sorted(p.name for p in host.root.iterdir()) == ["a", "a.release", "b", "b.release", "current"]
    assert [(a["installed_version"], a["allow_downgrade"]) for a in artifacts.asked] == [(None, False), ("1.0", False)]
    states = await reported(store, host.device_id)  # what the host runs, in the devices read model's words
    assert [(r.state, r.actor) for r in states] == [
        ({"software": {"app": "1.0"}}, ACTOR),
        ({"software": {"app": "1.1"}}, ACTOR),
    ]
    assert not list((mesh.home.root / "ssh" / "downloads" / host.device_id).iterdir())  # the local copy goes


async def test_a_failing_health_check_switches_back_and_reports_rolled_back(
    mesh: Mesh, store: EventStore, sshd: Sshd, artifacts: Steps, tmp_path: Path
) -> None:
    host = await add_host(mesh, store, sshd, tmp_path, commit_timeout=5)
    async with serving(mesh, store, artifacts) as gateway:
        assert (await install(store, host, "1.0")).state == "succeeded"
        broken = await install(store, host, "2.0", deadline_s=5 + 10)  # the bound, as a deadline
        assert broken.state == "failed", broken
        assert broken.detail.startswith("update rolled back: ") and "app is broken" in broken.detail, broken.detail
        assert "exited 3 on the host" in broken.detail
        assert (host.slot(), host.current()) == ("a", "1.0")  # back on the version that ran
        assert (host.root / "b" / "VERSION").read_text() == "2.0"  # it was installed and switched to, then back
        assert gateway.updates.software(host.device_id) == {"app": "1.0"}  # the baseline did not move
    assert [r.state for r in await reported(store, host.device_id)] == [{"software": {"app": "1.0"}}]


async def test_a_health_check_that_hangs_is_killed_at_commit_timeout_and_the_update_rolled_back(
    mesh: Mesh, store: EventStore, sshd: Sshd, artifacts: Steps, tmp_path: Path
) -> None:
    marker = tmp_path / "check.pid"
    host = await add_host(mesh, store, sshd, tmp_path, check=f"echo $$ > {marker}; exec sleep 300", commit_timeout=2)
    async with serving(mesh, store, artifacts):
        hung = await install(store, host, "1.0", deadline_s=2 + 10)
    assert hung.state == "failed" and "within commit_timeout (2 s)" in hung.detail, hung.detail
    assert hung.detail.startswith("update rolled back: ")
    assert not (host.root / "current").exists()  # the first update: nothing ran before it, nothing runs now
    pid = int(marker.read_text())
    await eventually(lambda: not running(pid), timeout=10, what=f"the hung health check ({pid}) to be killed")


async def test_an_archive_that_escapes_its_slot_is_refused_before_anything_reaches_the_host(
    mesh: Mesh, store: EventStore, sshd: Sshd, artifacts: Steps, tmp_path: Path
) -> None:
    host = await add_host(mesh, store, sshd, tmp_path)
    async with serving(mesh, store, artifacts):
        assert (await install(store, host, "1.0")).state == "succeeded"
        before, copies = host.tree(), sftp_sessions(sshd)
        bad = await install(store, host, "6.6")
    assert bad.state == "failed" and bad.detail.startswith("update failed: install failed ("), bad.detail
    assert "is refused" in bad.detail and "'../../escaped'" in bad.detail
    assert host.tree() == before and sftp_sessions(sshd) == copies  # not copied, nothing on the host changed
    assert not (tmp_path / "host" / "escaped").exists() and not (tmp_path / "escaped").exists()


async def test_a_downgrade_below_the_installed_version_is_refused_unless_allowed(
    mesh: Mesh, store: EventStore, sshd: Sshd, artifacts: Steps, tmp_path: Path
) -> None:
    host = await add_host(mesh, store, sshd, tmp_path)
    async with serving(mesh, store, artifacts) as gateway:
        assert (await install(store, host, "1.1")).state == "succeeded"
        before, copies = host.tree(), sftp_sessions(sshd)
        refused = await install(store, host, "1.0")
        assert refused.state == "failed" and refused.detail.startswith("update refused (downgrade): "), refused
        assert host.tree() == before and sftp_sessions(sshd) == copies

        allowed = await install(store, host, "1.0", allow_downgrade=True)
        assert allowed.result == {"state": "committed", "name": "app", "version": "1.0", "previous": "1.1"}
        assert (host.slot(), host.current()) == ("b", "1.0")
        assert gateway.updates.software(host.device_id) == {"app": "1.0"}  # the operator's choice is the baseline
    assert [(a["installed_version"], a["allow_downgrade"]) for a in artifacts.asked[1:]] == [
        ("1.1", False),
        ("1.1", True),
    ]


async def test_an_update_a_stopped_gateway_left_switched_is_switched_back_when_it_starts_again(
    mesh: Mesh, store: EventStore, sshd: Sshd, artifacts: Steps, tmp_path: Path
) -> None:
    host = await add_host(mesh, store, sshd, tmp_path)
    async with serving(mesh, store, artifacts) as gateway:
        assert (await install(store, host, "1.0")).state == "succeeded"
        records = gateway.updates.records(host.device_id)
        # As a gateway killed after the switch leaves it: the record in committing, `current` on the new slot.
        record = await records.begin("cmd-killed", "app", "1.1")
        await records.move(record, UpdateState.COMMITTING, prepared={"slot": "b", "previous_slot": "a"})
    (host.root / "b").mkdir()
    (host.root / "b" / "VERSION").write_text("1.1")
    os.symlink("b", host.root / ".current.tmp")
    os.replace(host.root / ".current.tmp", host.root / "current")

    async with serving(mesh, store, artifacts) as gateway:
        records = gateway.updates.records(host.device_id)
        await eventually(
            lambda: (r := records.get("cmd-killed")) is not None and r.ended, timeout=30, what="the recovery"
        )
        assert records.get("cmd-killed").state == UpdateState.ROLLED_BACK
        assert (host.slot(), host.current()) == ("a", "1.0")
        assert gateway.updates.software(host.device_id) == {"app": "1.0"}


async def test_an_artifact_of_the_mesh_is_downloaded_by_the_gateway_and_installed_on_the_host(
    mesh: Mesh, store: EventStore, sshd: Sshd, tmp_path: Path
) -> None:
    """The real downloader, through the gateway's own connection and the consumer ota-<host>; verify still local."""
    await ensure_update_buckets(store.js, replicas=1)
    name = f"app-{uuid.uuid4().hex[:8]}"
    added = await artifact_store.add(
        store, release(tmp_path, "3.0"), name=name, version="3.0", device_type=DEVICE_TYPE, actor="olga"
    )
    host = await add_host(mesh, store, sshd, tmp_path)
    asked: list[dict[str, Any]] = []

    async def verify(**request: Any) -> Any:
        asked.append(request)
        return added  # what the signed targets would say: its length and SHA-256

    def steps(registration: SshHostRegistered) -> tuple[Verify, Download]:
        async def fetch(target: Any, dest: Path) -> Path:
            return await download.download(
                gateway.store.nc,
                device_id=registration.device_id,
                target=target_path(target.name, target.version),
                dest=dest,
                length=target.length,
                sha256=target.sha256,
            )

        return verify, fetch

    gateway = SshGateway(store, mesh.home.root, FAST, update_steps=steps)
    stop = asyncio.Event()
    task = asyncio.create_task(gateway.run(stop))
    try:
        command = await commands.send(
            store, host.device_id, INSTALL_COMMAND, {"name": name, "version": "3.0"}, ttl_s=60, timeout_s=300,
            actor="control",
        )  # fmt: skip
        view = await follow_outcome(store, command, deadline_s=60)
    finally:
        stop.set()
        await task
    assert view.result == {"state": "committed", "name": name, "version": "3.0", "previous": None}, view
    assert (host.slot(), host.current()) == ("a", "3.0")
    assert asked[0]["installed_version"] is None


async def test_a_gateway_stopped_during_the_health_check_switches_back_and_reports_it_when_it_runs_again(
    mesh: Mesh, store: EventStore, sshd: Sshd, artifacts: Steps, tmp_path: Path
) -> None:
    marker = tmp_path / "check.pid"
    host = await add_host(
        mesh, store, sshd, tmp_path, check=f"echo $$ > {marker}; exec sleep 300", commit_timeout=120, ack_wait_s=2
    )
    args = {"name": "app", "version": "1.0"}
    command = await commands.send(
        store, host.device_id, INSTALL_COMMAND, args, ttl_s=60, timeout_s=300, actor="control"
    )
    async with serving(mesh, store, artifacts, ack_wait_s=2):
        await eventually(marker.exists, timeout=30, what="the health check to run on the host")
        assert (host.slot(), host.current()) == ("a", "1.0")  # switched, not yet committed
    assert not (host.root / "current").exists()  # the stop switched back (the first update: nothing runs)
    pid = int(marker.read_text())
    await eventually(lambda: not running(pid), timeout=10, what=f"the health check ({pid}) to be killed")

    async with serving(mesh, store, artifacts, ack_wait_s=2):  # the command comes back: its ending is reported
        view = await follow_outcome(store, command, deadline_s=30)
    assert view.state == "failed" and view.detail.startswith("update rolled back: the update was stopped"), view
