"""Commands sent at the hub to a site's device: through the leaf link, across a cut, within their time to live."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

import nats.errors
import pytest
from nats.aio.msg import Msg

from core import subjects
from core.commands import CommandState
from core.events import CommandEvent, CommandIssued, Event
from core.store import EventStore, connect
from edge import load_agent_config
from edge.agent import Agent
from mahavishnu.control import commands, devices, site_copies
from mahavishnu.sites import hub as sites
from mahavishnu.sites import runner as site_runner
from tests.harness import Mesh, free_port
from tests.mahavishnu.sites.sitekit import SITE, RunningSite, make_site, run_site
from tests.proxy import Proxy
from tests.waiting import eventually, eventually_async

DEVICE = "dev-cmd"


class SiteWithAgent:
    def __init__(self, site: RunningSite, proxy: Proxy, agent: Agent) -> None:
        self.site = site
        self.proxy = proxy
        self.agent = agent
        self.link_up = site_runner.link_message(site.site, site_runner.LinkState(True))

    async def cut(self) -> None:
        await self.proxy.cut()
        await eventually(lambda: self.site.said("cannot reach the hub"), timeout=20, what="the site to report the cut")

    async def restore(self) -> None:
        ups = self.site.lines.count(self.link_up)
        await self.proxy.restore()
        await eventually(
            lambda: self.site.lines.count(self.link_up) > ups, timeout=30, what="the site to report the link back"
        )


@pytest.fixture
async def at_site(hub: Mesh, control: EventStore, tmp_path: Path) -> AsyncIterator[SiteWithAgent]:
    """A site linked to the hub through a cut-able proxy, with one device's agent running there."""
    proxy = Proxy(free_port(), hub.leaf_port)
    await proxy.start()
    bundle = make_site(hub, (f"tls://127.0.0.1:{proxy.port}",), devices=())
    assert await sites.add_source(control.nc, sites.load(bundle))
    site = await run_site(bundle)
    stop = asyncio.Event()
    task: asyncio.Task[None] | None = None
    try:
        enrolment = await devices.enroll(
            hub.home,
            hub.settings,
            control,
            DEVICE,
            out_dir=tmp_path / "agent",
            site=SITE,
            url=f"tls://127.0.0.1:{site.port}",
        )
        await eventually(lambda: site.said(f"devices are now {DEVICE}"), timeout=20, what="the site to apply it")
        agent = Agent(load_agent_config(enrolment.agent_config))
        task = asyncio.create_task(agent.run(stop))
        running = SiteWithAgent(site, proxy, agent)
        await eventually(lambda: site.lines.count(running.link_up) >= 1, timeout=20, what="the leaf link")
        yield running
    finally:
        stop.set()
        if task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, 15)
        await site.close()
        await proxy.close()


async def lifecycle(hub: EventStore, command_id: str, device_id: str = DEVICE) -> list[Event]:
    """The device's reports (and cancels) about one command, as the hub holds them."""
    held = [s.event async for s in hub.read(subjects.device_event(device_id, "command"))]
    return [e for e in held if isinstance(e, CommandEvent) and e.command_id == command_id]


async def until_state(hub: EventStore, command: CommandIssued, state: CommandState, *, timeout: float = 60) -> None:
    async def reached() -> bool:
        return (await commands.find(hub, command.command_id)).state is state

    await eventually_async(reached, timeout=timeout, what=f"command {command.command_id} to be {state} at the hub")


async def send(hub: EventStore, name: str = "ping", *, ttl_s: float = 300) -> CommandIssued:
    return await commands.send(hub, DEVICE, name, {}, ttl_s=ttl_s, timeout_s=10, actor="tests")


def _tags(events: list[Event]) -> list[str]:
    return sorted(e.tag for e in events)


async def test_a_command_sent_at_the_hub_runs_at_the_site_and_reports_back_once(
    at_site: SiteWithAgent, control: EventStore
) -> None:
    command = await send(control)
    await until_state(control, command, CommandState.SUCCEEDED)
    assert at_site.agent.ran == [command.command_id]
    reports = await lifecycle(control, command.command_id)
    assert _tags(reports) == ["command.accepted.v1", "command.running.v1", "command.succeeded.v1"]


async def test_a_command_sent_while_the_link_is_cut_runs_once_it_is_back(
    at_site: SiteWithAgent, control: EventStore
) -> None:
    await at_site.cut()
    command = await send(control)
    assert (await commands.find(control, command.command_id)).state is CommandState.ISSUED
    assert at_site.agent.ran == []  # nothing can reach the site meanwhile
    await at_site.restore()
    await until_state(control, command, CommandState.SUCCEEDED)
    assert at_site.agent.ran == [command.command_id]
    reports = await lifecycle(control, command.command_id)
    assert _tags(reports) == ["command.accepted.v1", "command.running.v1", "command.succeeded.v1"]


async def test_a_command_whose_time_to_live_passes_while_the_link_is_cut_ends_expired_and_never_runs(
    at_site: SiteWithAgent, control: EventStore
) -> None:
    await at_site.cut()
    command = await send(control, ttl_s=1)
    await until_state(control, command, CommandState.EXPIRED, timeout=20)  # the hub reads it so at once
    await at_site.restore()

    async def recorded() -> bool:
        return [e.tag for e in await lifecycle(control, command.command_id)] == ["command.expired.v1"]

    # The agent receives it after its time to live, records it expired without running it,
    # and that record reaches the hub, once.
    await eventually_async(recorded, timeout=60, what="the site's record that the command expired")
    after = await send(control)  # a later command still runs: the expired one held nothing up
    await until_state(control, after, CommandState.SUCCEEDED)
    assert at_site.agent.ran == [after.command_id]
    assert [e.tag for e in await lifecycle(control, command.command_id)] == ["command.expired.v1"]


async def test_a_site_reaches_nothing_of_the_hubs_jetstream_but_its_devices_commands(
    at_site: SiteWithAgent, hub: Mesh
) -> None:
    nc = await connect(site_runner.site_identity(at_site.site.bundle, at_site.site.port), name="tests-site")
    try:
        api = subjects.HUB_COMMANDS_API
        for subject in (
            f"{api}.INFO",
            f"{api}.STREAM.INFO.EVENTS",
            f"{api}.STREAM.DELETE.COMMANDS",
            f"{api}.CONSUMER.CREATE.COMMANDS",  # every device's commands at once
            f"{api}.CONSUMER.CREATE.EVENTS.x.mesh.evt.>",
            f"{api}.CONSUMER.INFO.COMMANDS.device-{DEVICE}",
            f"{api}.CONSUMER.CREATE.COMMANDS.mine.mesh.cmd.{DEVICE}.>",  # even of its own device's commands
            f"{api}.CONSUMER.RESET.COMMANDS.device-{DEVICE}",  # only its own site's consumer may be restarted
        ):
            with pytest.raises((nats.errors.NoRespondersError, nats.errors.TimeoutError)):
                await nc.request(subject, b"{}", timeout=2)
        # The site's own streams keep what they hold for the site's retention.
        for stream in ("EVENTS", "COMMANDS"):
            reply = await nc.request(f"$JS.API.STREAM.INFO.{stream}", b"", timeout=5)
            assert json.loads(reply.data)["config"]["max_age"] == int(at_site.site.site.retention_s * 1e9)
    finally:
        await nc.close()
    assert at_site.site.site.retention_s == hub.settings.leaf.site_retention


async def test_a_command_canceled_at_the_hub_is_removed_at_the_site_or_refused_when_it_cannot_say(
    at_site: SiteWithAgent, hub: Mesh, control: EventStore, tmp_path: Path
) -> None:
    idle = "dev-idle"  # enrolled at the site, its agent never runs: its commands wait there
    url = f"tls://127.0.0.1:{at_site.site.port}"
    await devices.enroll(hub.home, hub.settings, control, idle, out_dir=tmp_path / idle, site=SITE, url=url)
    await eventually(
        lambda: at_site.site.said(f"devices are now {DEVICE}, {idle}"), timeout=20, what="the site to apply it"
    )
    api = at_site.site.site.api
    site_of = {idle: api}.get

    async def copied(command: CommandIssued) -> bool:
        return await site_copies.copy_at(control.nc, api, idle, command.command_id) is not None

    command = await commands.send(control, idle, "ping", {}, ttl_s=300, timeout_s=10, actor="tests")
    await eventually_async(lambda: copied(command), timeout=30, what="the command's copy at the site")
    await commands.cancel(control, command.command_id, actor="tests", site_of=lambda d: site_of(d) or "")
    assert not await copied(command)  # gone at the site, so its device never gets it
    assert [e.tag for e in await lifecycle(control, command.command_id, idle)] == ["command.canceled.v1"]

    await at_site.cut()
    silent = await commands.send(control, idle, "ping", {}, ttl_s=300, timeout_s=10, actor="tests")
    with pytest.raises(commands.CommandRefused, match="its site does not answer"):
        await commands.cancel(control, silent.command_id, actor="tests", site_of=lambda d: site_of(d) or "")
    await at_site.restore()
    await eventually_async(lambda: copied(silent), timeout=30, what="the command's copy at the site")  # nothing lost
    await commands.cancel(control, silent.command_id, actor="tests", site_of=lambda d: site_of(d) or "")
    assert not await copied(silent)

    ran = await send(control)  # the device with an agent took its command: too late for it
    await until_state(control, ran, CommandState.SUCCEEDED)
    with pytest.raises(commands.CommandRefused, match="already succeeded"):
        await commands.cancel(control, ran.command_id, actor="tests", site_of=lambda d: api)


async def test_another_site_hears_none_of_the_commands_the_hub_delivers_to_a_site(
    at_site: SiteWithAgent, hub: Mesh, control: EventStore
) -> None:
    other = await run_site(make_site(hub, (f"tls://127.0.0.1:{hub.leaf_port}",), ("dev-other",), name="site-b"))
    nc = await connect(site_runner.site_identity(other.bundle, other.port), name="tests-site-b")
    heard: list[str] = []

    async def collect(msg: Msg) -> None:
        heard.append(msg.subject)

    try:
        await eventually(lambda: other.said("is up: the hub sources"), timeout=30, what="site-b's link")
        # site-b's own server listens where the hub delivers site-a's commands, and more widely.
        await nc.subscribe(subjects.site_commands(SITE), cb=collect)
        await nc.subscribe(f"{subjects.SITES_PREFIX}.>", cb=collect)
        await nc.flush()

        async def probe_heard() -> bool:  # the hub's messages under the prefix do reach site-b
            await control.nc.publish(f"{subjects.SITES_PREFIX}.site-b.probe", b"")
            await control.nc.flush()
            return f"{subjects.SITES_PREFIX}.site-b.probe" in heard

        await eventually_async(probe_heard, timeout=20, what="site-b's interest to reach the hub")
        command = await send(control)
        await until_state(control, command, CommandState.SUCCEEDED)  # delivered to site-a, and run there
        await control.nc.publish(f"{subjects.SITES_PREFIX}.site-b.done", b"")
        await control.nc.flush()
        await eventually(lambda: f"{subjects.SITES_PREFIX}.site-b.done" in heard, timeout=20, what="the probe behind")
        assert subjects.site_commands(SITE) not in heard
    finally:
        await nc.close()
        await other.close()
