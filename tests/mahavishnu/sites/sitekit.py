"""What the site tests share: a hub with a leaf listener, a site run in this process, its devices."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from pathlib import Path

from certs import CertificateAuthority
from core import subjects
from core.events import TelemetryReported
from core.store import EventStore, Identity, connect
from mahavishnu.sites import hub as sites
from mahavishnu.sites import runner as site_runner
from tests.harness import Mesh

SITE = "site-a"
DEVICES = ("dev-s1", "dev-s2")


@dataclass
class RunningSite:
    bundle: Path
    site: sites.Site
    stop: asyncio.Event
    task: asyncio.Task[int]
    lines: list[str] = field(default_factory=list)
    port: int = 0

    def said(self, text: str) -> bool:
        return any(text in line for line in self.lines)

    async def close(self) -> None:
        self.stop.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.task, 30)


async def run_site(bundle: Path) -> RunningSite:
    """`site up` in this process, on a free port; returns once devices can connect."""
    stop = asyncio.Event()
    ready = asyncio.Event()
    running = RunningSite(bundle, sites.load(bundle), stop, asyncio.get_running_loop().create_future())  # type: ignore[arg-type]

    def on_ready(port: int) -> None:
        running.port = port
        ready.set()

    running.task = asyncio.create_task(site_runner.run(bundle, stop, port=-1, out=running.lines.append, ready=on_ready))
    waiting = asyncio.create_task(ready.wait())
    await asyncio.wait({waiting, running.task}, timeout=30, return_when=asyncio.FIRST_COMPLETED)
    if running.task.done():
        running.task.result()  # raises why it did not start
    assert ready.is_set(), f"the site did not come up: {running.lines}"
    return running


def make_site(mesh: Mesh, hub_urls: tuple[str, ...], devices: tuple[str, ...] = DEVICES, *, name: str = SITE) -> Path:
    """Register the site on the hub's control host and enrol its devices (their files under the bundle's parent)."""
    site = sites.new_site(name, mesh.settings, hosts=["localhost"], host="127.0.0.1", port=-1, hub_urls=hub_urls)
    bundle = sites.add(mesh.home, mesh.settings, site)
    ca = CertificateAuthority.load(mesh.home.ca_dir)
    for device_id in devices:
        ca.issue_client(device_id, kind="device", out_dir=mesh.home.root / "devices" / device_id)
        sites.assign_device(mesh.home, name, device_id)
    sites.refresh_bundles(mesh.home, ca)
    return bundle


async def device_store(mesh: Mesh, device_id: str, port: int, errors: list[str] | None = None) -> EventStore:
    folder = mesh.home.root / "devices" / device_id
    identity = Identity(f"tls://127.0.0.1:{port}", folder / "ca.pem", folder / "cert.pem", folder / "key.pem")

    async def on_error(exc: Exception) -> None:
        if errors is not None:
            errors.append(str(exc))

    nc = await connect(
        identity, name=device_id, inbox_prefix=subjects.device_inbox_prefix(device_id), error_cb=on_error
    )
    return EventStore(nc)


async def hub_events(hub: EventStore, device_id: str) -> list[TelemetryReported]:
    found = [s.event async for s in hub.read(subjects.device_events(device_id))]
    assert all(isinstance(e, TelemetryReported) for e in found)
    return found  # type: ignore[return-value]
