"""Edge sites with real processes: a hub, a site's leaf server, devices at the site, a real TCP link to cut."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Awaitable
from pathlib import Path

import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg

from core import subjects
from core.events import TelemetryReported
from core.store import EventStore, connect
from edge import load_agent_config
from edge.agent import Agent
from mahavishnu.control import devices
from mahavishnu.runtime.server import NatsServer
from mahavishnu.sites import cutoff
from mahavishnu.sites import hub as sites
from mahavishnu.sites import runner as site_runner
from tests.harness import Mesh, free_port, start_mesh
from tests.mahavishnu.sites.sitekit import DEVICES, SITE, RunningSite, device_store, hub_events, make_site, run_site
from tests.proxy import Proxy
from tests.waiting import eventually, eventually_async


def _reading(device_id: str, n: int) -> TelemetryReported:
    return TelemetryReported(device_id=device_id, metrics={"n": float(n)})


async def test_a_cut_link_loses_nothing_and_stores_nothing_twice(hub: Mesh, control: EventStore) -> None:
    proxy = Proxy(free_port(), hub.leaf_port)
    await proxy.start()
    bundle = make_site(hub, (f"tls://127.0.0.1:{proxy.port}",))
    site = await run_site(bundle)
    stores: list[EventStore] = []
    try:
        assert await sites.add_source(control.nc, site.site)
        link_up = site_runner.link_message(site.site, site_runner.LinkState(True))
        await eventually(lambda: link_up in site.lines, timeout=20, what="the leaf link to come up")
        stores = [await device_store(hub, d, site.port) for d in DEVICES]
        sent: dict[str, list[float]] = {d: [] for d in DEVICES}

        async def append(count: int) -> None:
            for _ in range(count):
                for device_id, store in zip(DEVICES, stores, strict=True):
                    n = float(len(sent[device_id]))
                    await store.append(_reading(device_id, int(n)))  # acknowledged by the site's JetStream
                    sent[device_id].append(n)

        await append(5)
        await _until_hub_holds(control, sent)

        await proxy.cut()
        await eventually(lambda: site.said("cannot reach the hub"), timeout=20, what="the site to report the cut")
        await append(20)  # offline: every append is still acknowledged, at the site
        assert len(await hub_events(control, DEVICES[0])) == 5  # and none of them crossed

        await proxy.restore()
        await _until_hub_holds(control, sent)
        await eventually(lambda: site.lines.count(link_up) == 2, timeout=20, what="the site to report the link back")
        for device_id in DEVICES:
            held = await hub_events(control, device_id)
            assert [e.metrics["n"] for e in held] == sent[device_id]  # each once, in the device's order
            assert len({e.event_id for e in held}) == len(held)
    finally:
        for store in stores:
            await store.nc.close()
        await site.close()
        await proxy.close()


async def _until_hub_holds(hub: EventStore, sent: dict[str, list[float]], *, timeout: float = 60) -> None:
    async def holds() -> bool:
        for device_id, numbers in sent.items():
            if len(await hub_events(hub, device_id)) < len(numbers):
                return False
        return True

    await eventually_async(holds, timeout=timeout, what=f"the hub to hold {sum(map(len, sent.values()))} events")


async def test_a_site_that_cannot_reach_the_hub_says_so_and_keeps_accepting(hub: Mesh) -> None:
    nowhere = f"tls://127.0.0.1:{free_port()}"
    site = await run_site(make_site(hub, (nowhere,), devices=DEVICES[:1]))
    store: EventStore | None = None
    try:
        await eventually(lambda: site.said(f"cannot reach the hub at {nowhere}"), timeout=20, what="the message")
        store = await device_store(hub, DEVICES[0], site.port)
        appended = [await store.append(_reading(DEVICES[0], n)) for n in range(3)]
        assert [a[0].seq for a in appended] == [1, 2, 3]
        assert not site.task.done()
    finally:
        if store is not None:
            await store.nc.close()
        await site.close()
    assert site.task.result() == 0


async def test_a_device_at_a_site_cannot_publish_as_another(hub: Mesh) -> None:
    site = await run_site(make_site(hub, (f"tls://127.0.0.1:{free_port()}",)))
    errors: list[str] = []
    store: EventStore | None = None
    try:
        store = await device_store(hub, "dev-s1", site.port, errors)
        nc: Client = store.nc
        await nc.publish(subjects.device_event("dev-s2", "telemetry"), b"{}")
        await nc.flush()
        await eventually(lambda: any("permissions violation" in e.lower() for e in errors), timeout=10, what="refusal")
        own = await store.append(_reading("dev-s1", 0))
        assert own[0].seq == 1  # the refused message was never stored: its own is the first
    finally:
        if store is not None:
            await store.nc.close()
        await site.close()


async def test_a_site_that_starts_after_its_source_is_sourced_at_once(hub: Mesh, control: EventStore) -> None:
    # The hub's own retry would wait out its backoff (26 s measured); the keeper re-attaches
    # the source as soon as the site's API answers across the link.
    bundle = make_site(hub, (f"tls://127.0.0.1:{hub.leaf_port}",), devices=DEVICES[:1])
    assert await sites.add_source(control.nc, sites.load(bundle))
    site = await run_site(bundle)
    store: EventStore | None = None
    try:
        store = await device_store(hub, DEVICES[0], site.port)
        for n in range(3):
            await store.append(_reading(DEVICES[0], n))

        async def arrived() -> bool:
            return len(await hub_events(control, DEVICES[0])) == 3

        await eventually_async(arrived, timeout=12, what="the late site's events at the hub")
        assert [e.metrics["n"] for e in await hub_events(control, DEVICES[0])] == [0.0, 1.0, 2.0]
    finally:
        if store is not None:
            await store.nc.close()
        await site.close()


async def test_an_agent_enrolled_while_its_site_runs_works_there_and_reaches_the_hub(
    hub: Mesh, control: EventStore, tmp_path: Path
) -> None:
    bundle = make_site(hub, (f"tls://127.0.0.1:{hub.leaf_port}",), devices=())
    assert await sites.add_source(control.nc, sites.load(bundle))
    site = await run_site(bundle)
    running: tuple[Agent, asyncio.Event, asyncio.Task[None]] | None = None
    try:
        enrolment = await devices.enroll(
            hub.home,
            hub.settings,
            control,
            "dev-agent",
            out_dir=tmp_path / "agent",
            site=SITE,
            url=f"tls://127.0.0.1:{site.port}",
        )
        await eventually(lambda: site.said("devices are now dev-agent"), timeout=20, what="the site to apply it")
        agent = Agent(load_agent_config(enrolment.agent_config))
        stop = asyncio.Event()
        running = (agent, stop, asyncio.create_task(agent.run(stop)))

        async def reported_at_hub() -> bool:
            held = [s.subject async for s in control.read(subjects.device_events("dev-agent"))]
            return subjects.device_event("dev-agent", "reported") in held

        await eventually_async(reported_at_hub, timeout=30, what="the agent's report, sourced to the hub")
        assert not running[2].done()  # its command loop found its consumer at the site
    finally:
        if running is not None:
            running[1].set()
            await asyncio.wait_for(running[2], 15)
        await site.close()


async def test_the_hub_itself_keeps_mesh_subjects_off_a_misconfigured_sites_link(
    hub: Mesh, control: EventStore
) -> None:
    # The site's config without its deny lists (edited, or an old template): the hub's own
    # permissions for the site still keep events off the link, so sourcing is the only way in.
    bundle = make_site(hub, (f"tls://127.0.0.1:{hub.leaf_port}",), devices=DEVICES[:1])
    site = sites.load(bundle)
    config = site_runner.prepare_bundle(bundle, site, port=-1)
    config.write_text(config.read_text().replace("deny_imports:", "# deny_imports:").replace("deny_exports:", "#"))
    server = NatsServer(config, name="careless-site")
    endpoints = server.start()
    nc: Client | None = None
    try:
        assert endpoints.monitor_port is not None
        nc = await connect(site_runner.site_identity(bundle, endpoints.port), name="careless")
        await site_runner.ensure_site_streams(EventStore(nc), site)
        assert await sites.add_source(control.nc, site)
        await eventually(
            lambda: site_runner.leafz(endpoints.monitor_port or 0).get("leafnodes"), timeout=20, what="the link"
        )
        subject = subjects.device_event(DEVICES[0], "telemetry")
        for n in range(5):  # no message id: the hub's duplicate window could not hide a second copy
            await nc.request(subject, f'{{"n": {n}}}'.encode(), timeout=5)

        async def held() -> int:
            return len([s async for s in control.read(subjects.device_events(DEVICES[0]))])

        await eventually_async(lambda: _equals(held(), 5), timeout=30, what="5 sourced messages at the hub")
        info = await control.js.stream_info("EVENTS")
        assert info.state.messages == 5  # and no copy that crossed the link directly

        # Nor does a subscriber at the hub get them: a probe published after them on the same
        # connection arrives, so they would have arrived before it had they crossed.
        seen: list[str] = []

        async def collect(msg: Msg) -> None:
            seen.append(msg.subject)

        await control.nc.subscribe("mesh.evt.>", cb=collect)
        await control.nc.subscribe("probe.>", cb=collect)
        await control.nc.flush()

        site_nc = nc

        async def probe_crossed() -> bool:
            await site_nc.publish("probe.ping", b"")
            await site_nc.flush()
            return "probe.ping" in seen

        await eventually_async(probe_crossed, timeout=20, what="the hub's interest to reach the site")
        await nc.publish(subject, b'{"n": 99}')
        await nc.publish("probe.done", b"")
        await nc.flush()
        await eventually(lambda: "probe.done" in seen, timeout=20, what="the probe behind it")
        assert not [s for s in seen if s.startswith("mesh.")]
    finally:
        if nc is not None:
            await nc.close()
        server.stop()


async def _equals(count: Awaitable[int], expected: int) -> bool:
    return await count == expected


async def test_the_hub_stopping_and_starting_again_loses_nothing_and_stores_nothing_twice(tmp_path: Path) -> None:
    hub = start_mesh(tmp_path / "hub", port=free_port(), leaf_port=free_port())  # fixed: they survive the restart
    site: RunningSite | None = None
    device: EventStore | None = None
    control = EventStore(await connect(hub.identity, name="tests-hub"))
    stop = asyncio.Event()
    keeping = asyncio.create_task(sites.keep_sources(control.nc, hub.home, stop))  # as `up` does
    try:
        await control.ensure_streams()
        bundle = make_site(hub, (f"tls://127.0.0.1:{hub.leaf_port}",), devices=DEVICES[:1])
        assert await sites.add_source(control.nc, sites.load(bundle))
        site = await run_site(bundle)
        device = await device_store(hub, DEVICES[0], site.port)
        sent: dict[str, list[float]] = {DEVICES[0]: []}
        for n in range(5):
            await device.append(_reading(DEVICES[0], n))
            sent[DEVICES[0]].append(float(n))
        await _until_hub_holds(control, sent)

        await asyncio.to_thread(hub.server.stop)
        await eventually(lambda: site.said("cannot reach the hub"), timeout=20, what="the site to report the hub gone")
        for n in range(5, 25):
            await device.append(_reading(DEVICES[0], n))  # acknowledged at the site
            sent[DEVICES[0]].append(float(n))
        await asyncio.to_thread(hub.server.start)

        # The control connection reconnects by itself. Within 25 s: the server's own retry
        # backoff took 42 s here; the keeper re-attaches the source once the site answers.
        await _until_hub_holds(control, sent, timeout=25)
        held = await hub_events(control, DEVICES[0])
        assert [e.metrics["n"] for e in held] == sent[DEVICES[0]]
    finally:
        if device is not None:
            await device.nc.close()
        if site is not None:
            await site.close()
        stop.set()
        await keeping
        await control.nc.close()
        hub.stop()


async def test_a_site_is_removed_only_once_the_hub_holds_its_events(
    hub: Mesh, control: EventStore, tmp_path: Path
) -> None:
    proxy = Proxy(free_port(), hub.leaf_port)
    await proxy.start()
    edge = tmp_path / "edge"  # the bundle as copied to the edge host
    shutil.copytree(make_site(hub, (f"tls://127.0.0.1:{proxy.port}",), devices=DEVICES[:1]), edge)
    site = await run_site(edge)
    device: EventStore | None = None
    try:
        assert await sites.add_source(control.nc, site.site)
        device = await device_store(hub, DEVICES[0], site.port)
        sent: dict[str, list[float]] = {DEVICES[0]: [0.0, 1.0, 2.0]}
        for n in range(3):
            await device.append(_reading(DEVICES[0], n))
        await _until_hub_holds(control, sent)

        await proxy.cut()
        await eventually(lambda: site.said("cannot reach the hub"), timeout=20, what="the cut")
        await device.append(_reading(DEVICES[0], 3))
        with pytest.raises(sites.SiteError, match="does not answer"):
            await sites.remove_source(control.nc, site.site)

        await proxy.restore()
        sent[DEVICES[0]].append(3.0)
        await _until_hub_holds(control, sent)
        await sites.remove_source(control.nc, site.site)  # caught up: allowed
        info = await control.js.stream_info("EVENTS")
        assert not info.config.sources and info.state.messages == 4  # the copied events stay

        system = await connect(hub.home.system_identity(hub.settings, hub.port), name="tests-system")
        try:  # as `site remove` does: the live link is cut once the hub has reloaded its users
            before = await cutoff.config_loads(system, servers=1)
            links = proxy.connections
            link_up = site_runner.link_message(site.site, site_runner.LinkState(True))
            ups = site.lines.count(link_up)
            moved = sites.remove(hub.home, SITE)
            assert await cutoff.cut_off(system, site.site, before=before, servers=1) == 1
        finally:
            await system.close()
        assert sites.registered(hub.home) == [] and (moved / "site.json").is_file()
        await eventually(lambda: site.said("cannot reach the hub"), timeout=20, what="the site to lose its link")
        # It redials through the same proxy, never cut, and is refused from then on.
        await eventually(
            lambda: any("Leafnode connection closed: Authentication Failure" in line for line in hub.server.recent),
            timeout=30,
            what="the hub to refuse the removed site's link",
        )
        assert proxy.connections > links
        assert site.lines.count(link_up) == ups  # never up again since
    finally:
        if device is not None:
            await device.nc.close()
        await site.close()
        await proxy.close()
