"""`mahavishnu site up DIR`: run an edge site from its bundle until told to stop.

Starts the site's leaf nats-server (nats/leaf.conf.tmpl, rendered into the bundle) under
the same supervisor as the hub's, creates the site's streams in its own JetStream domain
(kept for the site's retention; COMMANDS sourcing each device's commands from the hub,
ADR 0013) and its devices' command consumers, prints how devices connect, and follows the leaf
link through the server's monitoring endpoint: when the hub cannot be reached it says
so once, naming the hub's URL, while the site keeps acknowledging its devices' appends;
when the link is back the hub's sourcing resumes where it left off.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import json
import logging
import re
import secrets
import time
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core import subjects
from core.errors import MahavishnuError
from core.metrics import new_registry
from core.probes import ProbeServer
from core.store import EventStore, Identity, connect
from core.streams import StreamSource, StreamSpec, default_streams
from mahavishnu.control.devices import consumer_config
from mahavishnu.control.permissions import COMMANDS_STREAM
from mahavishnu.runtime.home import write_private
from mahavishnu.runtime.natsconf import key_include_text
from mahavishnu.runtime.server import NatsServer
from mahavishnu.runtime.supervisor import RestartPolicy, Supervisor
from mahavishnu.sites import hub as sites
from mahavishnu.sites.leafconf import LeafConfig

log = logging.getLogger("mahavishnu.site")

LEAF_CONF = "leaf.conf"
KEY_INCLUDE = "jetstream-key.conf"
PID_FILE = "leaf.pid"
STORE_DIR = "jetstream"
SITE_STREAMS = ("EVENTS", "COMMANDS")  # what the site's devices append to and pull from
LINK_POLL_S = 0.5
KEEP_SOURCES_S = 1.0  # how often the site looks whether its sources of the hub's commands are attached
# A leaf link takes a moment to come up (TLS, then interest): without a word from the server
# about a failure, "down" is only reported once it has lasted this long.
DOWN_GRACE_S = 3.0
# A link the hub refuses (a removed site's, a revoked certificate's) is listed by this server
# for the moment between the hub's INFO and its refusal, and a look can fall in it: "up" is
# only reported once the link has been seen on two looks in a row.
UP_GRACE_S = LINK_POLL_S
# nats-server's own words when it cannot dial or keep a leaf remote.
_LEAF_ERROR = re.compile(r"(?:Error trying to connect as leafnode[^\n]*|leafnode[^\n]*(?:error|Error)[^\n]*)")


@dataclass(frozen=True)
class LinkState:
    up: bool
    detail: str = ""


def link_state(leafz: dict[str, Any], recent: Iterable[str]) -> LinkState:
    """Whether the site's leaf link is up, from the server's /leafz document and its log lines (pure).

    When down, `detail` is the server's last word about the leaf remote, if it said one.
    """
    if leafz.get("leafnodes"):
        return LinkState(True)
    errors = [match.group(0) for line in recent if (match := _LEAF_ERROR.search(line))]
    return LinkState(False, errors[-1] if errors else "")


def to_report(last: bool | None, state: LinkState, down_for: float, up_for: float) -> bool:
    """Whether a link state is news worth one line (pure): a change to up once it lasted
    UP_GRACE_S (so a refused link's moment is not taken for a link); a change to down once the
    server named a failure or it lasted DOWN_GRACE_S (so a start does not cry wolf)."""
    if state.up == last:
        return False
    if state.up:
        return up_for >= UP_GRACE_S
    return bool(state.detail) or down_for >= DOWN_GRACE_S


def link_message(site: sites.Site, state: LinkState) -> str:
    """The one line `site up` prints when the link changes (pure)."""
    urls = ", ".join(site.hub_urls)
    if state.up:
        return f"link to the hub {urls} is up: the hub sources this site's events from where it left off"
    detail = f" ({state.detail})" if state.detail else ""
    return (
        f"cannot reach the hub at {urls}{detail}: the site keeps accepting and storing its devices' events, "
        "and the hub receives them once the link is back; check the hub is up with [leaf] port set, "
        "and the network between"
    )


def connection_help(site: sites.Site, bundle: Path, port: int) -> str:
    """What `site up` prints so devices and people know where to connect (pure)."""
    return "\n".join(
        [
            f"site {site.name} is up: devices connect to tls://{site.hosts[0]}:{port} (JetStream domain {site.domain})",
            f"  bundle    {bundle}",
            f"  hub       {', '.join(site.hub_urls)}",
            f"  devices   {', '.join(site.devices) or f'none yet: `mahavishnu device enroll ID --site {site.name}`'}",
            "  new users copy site.json and users.conf from the control host here: they apply at once",
            "  stop      Ctrl-C",
        ]
    )


def prepare_bundle(bundle: Path, site: sites.Site, *, port: int | None = None, monitor_port: int = -1) -> Path:
    """Write the site server's configuration (and its JetStream key, once) into the bundle; its path.

    Rendered at every start with absolute paths, so the bundle can be copied anywhere.
    """
    bundle = bundle.resolve()
    for needed in ("ca.pem", "cert.pem", "key.pem", sites.USERS_FILE):
        if not (bundle / needed).is_file():
            raise sites.SiteError(f"{bundle / needed} is missing: copy the whole bundle folder from the control host")
    key = bundle / KEY_INCLUDE
    if not key.is_file():
        if (bundle / STORE_DIR).is_dir() and any((bundle / STORE_DIR).iterdir()):
            raise sites.SiteError(
                f"the site's store {bundle / STORE_DIR} exists but its key {key} is missing: restore the key file, "
                "or move the store away to start empty (events not yet at the hub are lost then)"
            )
        write_private(key, key_include_text(base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")))
    config = LeafConfig(
        server_name=site.server_name,
        domain=site.domain,
        host=site.host,
        port=site.port if port is None else port,
        monitor_port=monitor_port,
        hub_urls=site.hub_urls,
        cert_file=bundle / "cert.pem",
        key_file=bundle / "key.pem",
        ca_file=bundle / "ca.pem",
        store_dir=bundle / STORE_DIR,
        key_include=KEY_INCLUDE,
        users_include=sites.USERS_FILE,
        pid_file=bundle / PID_FILE,
    )
    path = bundle / LEAF_CONF
    write_private(path, config.render())
    return path


def site_identity(bundle: Path, port: int) -> Identity:
    """The site's own identity on its own server (its certificate is also a client certificate)."""
    bundle = bundle.resolve()
    return Identity(f"tls://127.0.0.1:{port}", bundle / "ca.pem", bundle / "cert.pem", bundle / "key.pem")


def site_streams(site: sites.Site) -> tuple[StreamSpec, ...]:
    """The site's EVENTS and COMMANDS streams (pure): kept for the site's retention, and COMMANDS
    sourcing its devices' commands from the hub's consumer for this site (ADR 0013), once it has devices.
    """
    streams = default_streams(events_max_age_s=site.retention_s, commands_max_age_s=site.retention_s)
    hub_consumer = (subjects.site_consumer(site.name), subjects.site_commands(site.name))
    sources = (StreamSource(COMMANDS_STREAM, subjects.HUB_COMMANDS_API, consumer=hub_consumer),) if site.devices else ()
    return tuple(
        dataclasses.replace(s, sources=sources) if s.name == COMMANDS_STREAM else s
        for s in streams
        if s.name in SITE_STREAMS
    )


async def ensure_site_streams(store: EventStore, site: sites.Site) -> None:
    """The site's EVENTS and COMMANDS streams (in its own domain) and each device's command consumer."""
    store.streams = site_streams(site)
    await store.ensure_streams()
    for device_id in site.devices:
        await store.ensure_durable(COMMANDS_STREAM, subjects.device_consumer(device_id), consumer_config(device_id))


def bundle_stamp(bundle: Path) -> tuple[float, ...]:
    """When site.json and users.conf last changed (0 for a missing file)."""
    stamps = []
    for name in (sites.SITE_FILE, sites.USERS_FILE):
        try:
            stamps.append((bundle / name).stat().st_mtime)
        except FileNotFoundError:
            stamps.append(0.0)
    return tuple(stamps)


async def follow_bundle(
    server: NatsServer, store: EventStore, bundle: Path, stop: asyncio.Event, out: Callable[[str], None]
) -> None:
    """Apply a new site.json or users.conf (copied from the control host) while the site runs:
    the server re-reads its users and each new device gets its command consumer."""
    seen = bundle_stamp(bundle)
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), LINK_POLL_S)
        stamp = bundle_stamp(bundle)
        if stamp == seen or stop.is_set():
            continue
        seen = stamp
        try:
            site = sites.load(bundle)
            server.reload()
            await ensure_site_streams(store, site)
        except MahavishnuError as exc:  # a half-copied bundle: the next change completes it
            log.warning("cannot apply the changed bundle yet", extra={"reason": str(exc)})
            continue
        out(f"bundle changed: the site's devices are now {', '.join(site.devices) or 'none'}")


def leafz(monitor_port: int) -> dict[str, Any]:
    """The server's /leafz monitoring document (its leaf connections)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{monitor_port}/leafz", timeout=2) as reply:
        return json.loads(reply.read())  # type: ignore[no-any-return]


@dataclass
class Link:
    """The leaf link as follow_link last saw it, for the tasks that act on it."""

    up: bool = False


def stalled(info: dict[str, Any]) -> bool:
    """Whether a source of a stream has no consumer at its origin, from the stream's info (pure)."""
    return any(source.get("active", sites.NO_CONSUMER) == sites.NO_CONSUMER for source in info.get("sources") or [])


async def keep_command_sources(
    store: EventStore, link: Link, stop: asyncio.Event, *, interval: float = KEEP_SOURCES_S
) -> None:
    """Until `stop`: attach COMMANDS' sources again when they have had no consumer at the hub for two
    checks in a row while the link is up. Errors are logged, never raised.

    After a cut the site's server waits out its own retry backoff (40 s measured) before it asks
    the hub again; commands sent meanwhile would wait as long. Attached again they resume after
    the last command the stream holds from each source (as reattach does for the hub's EVENTS).
    """
    suspect = False
    while not stop.is_set():
        try:
            info = await sites.js_api(store.nc, f"$JS.API.STREAM.INFO.{COMMANDS_STREAM}", b"", timeout=5)
            now = link.up and "error" not in info and stalled(info)
            if now and suspect:
                config = info["config"]
                sources = config.get("sources") or []
                for attached in ([], sources):
                    config["sources"] = attached
                    reply = await sites.js_api(
                        store.nc, f"$JS.API.STREAM.UPDATE.{COMMANDS_STREAM}", json.dumps(config).encode(), timeout=5
                    )
                    if "error" in reply:
                        raise sites.SiteError(f"cannot update COMMANDS' sources: {reply['error'].get('description')}")
                log.info("re-attached the hub's commands", extra={"sources": len(sources)})
                now = False
            suspect = now
        except (MahavishnuError, ValueError, KeyError) as exc:
            log.warning("cannot check the commands' sources; trying again", extra={"reason": str(exc)})
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)


async def follow_link(
    server: NatsServer, site: sites.Site, stop: asyncio.Event, out: Callable[[str], None], link: Link | None = None
) -> None:
    """Report each change of the leaf link, once, until `stop`; `link` follows every look."""
    last: bool | None = None
    down_since: float | None = None  # since when the link has been seen down
    up_since: float | None = None  # since when it has been seen up
    while not stop.is_set():
        endpoints = server.endpoints
        if endpoints is not None and endpoints.monitor_port and server.running:
            try:
                document = await asyncio.to_thread(leafz, endpoints.monitor_port)
            except (OSError, ValueError):
                document = None  # the server is restarting: ask again next time
            if document is not None:
                state = link_state(document, list(server.recent))
                if link is not None:
                    link.up = state.up
                now = time.monotonic()
                if state.up:
                    down_since = None
                    up_since = now if up_since is None else up_since
                else:
                    up_since = None
                    down_since = now if down_since is None else down_since
                down_for = 0.0 if down_since is None else now - down_since
                if to_report(last, state, down_for, 0.0 if up_since is None else now - up_since):
                    message = link_message(site, state)
                    (log.info if state.up else log.warning)(
                        message, extra={"site": site.name, "hub": list(site.hub_urls), "link": state.up}
                    )
                    out(message)
                    last = state.up
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), LINK_POLL_S)


async def run(
    bundle: Path,
    stop: asyncio.Event,
    *,
    port: int | None = None,
    out: Callable[[str], None] = print,
    ready: Callable[[int], None] | None = None,
    probe_port: int = 0,
    probe_host: str = "127.0.0.1",
) -> int:
    """Run the site until `stop` is set; 0 on a clean stop. SiteError or ServerStartError when it cannot start.

    `ready(port)` is called once devices can connect (tests pass port -1 and learn it).
    With `probe_port`, /health, /ready (the site's server runs and its own connection is up:
    devices can append, whether or not the hub is reachable) and /metrics are served there.
    """
    bundle = bundle.resolve()  # noqa: ASYNC240 once, before anything runs
    site = sites.load(bundle)
    config = prepare_bundle(bundle, site, port=port)
    server = NatsServer(config, name=f"site-{site.name}")
    supervisor = Supervisor(server, RestartPolicy())
    await supervisor.start()
    watcher = asyncio.create_task(supervisor.watch(), name="site-supervisor")
    following: asyncio.Task[None] | None = None
    watching: asyncio.Task[None] | None = None
    keeping: asyncio.Task[None] | None = None
    store: EventStore | None = None
    probes: ProbeServer | None = None
    try:
        assert server.endpoints is not None
        bound = server.endpoints.port
        store = EventStore(await connect(site_identity(bundle, bound), name=f"site-{site.name}"))
        await ensure_site_streams(store, site)
        link = Link()
        following = asyncio.create_task(follow_link(server, site, stop, out, link), name="site-link")
        keeping = asyncio.create_task(keep_command_sources(store, link, stop), name="site-commands")
        watching = asyncio.create_task(follow_bundle(server, store, bundle, stop, out), name="site-bundle")
        if probe_port:
            connected = store.nc
            probes = ProbeServer(
                probe_host, probe_port, new_registry(), ready=lambda: server.running and connected.is_connected
            )
            await probes.start()
        out(connection_help(site, bundle, bound))
        if probes is not None:
            out(f"  probes    http://{probe_host}:{probes.port}/metrics /health /ready")
        if ready is not None:
            ready(bound)
        stopper = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait({watcher, stopper}, return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
        if watcher in done:
            watcher.result()  # GaveUp: the server keeps crashing
        out(f"site {site.name} stopped")
        return 0
    finally:
        stop.set()
        for task in (following, watching, keeping):
            if task is not None:
                await task
        if probes is not None:
            await probes.stop()
        if store is not None and not store.nc.is_closed:
            await store.nc.close()
        supervisor.stopping()
        await supervisor.stop()
        if not watcher.done():
            await watcher
