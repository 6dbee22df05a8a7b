"""Edge sites: a leaf nats-server per site, its bundle, its devices, and the hub's sources.

A site is registered on the control host with `mahavishnu site add NAME`, which issues
its certificate and writes its bundle, a self-contained folder to copy to the edge host:

    HOME/sites/<name>/site.json   name, JetStream domain, hub URLs, listener, devices
    HOME/sites/<name>/ca.pem      the mesh CA (devices and the hub are checked against it)
    HOME/sites/<name>/cert.pem    the site's certificate (kind "site"), key.pem its key (0600)
    HOME/sites/<name>/users.conf  the site's own user and its devices' users (0600)

`mahavishnu site up DIR` runs the site from it (mahavishnu.sites.runner). A device
belongs to a site when it is enrolled with `device enroll ID --site NAME`: it is added
to site.json and its user to the bundle's users.conf (copy both to the edge host: a
running `site up` applies them at once).

The hub's EVENTS stream sources each site's EVENTS stream through the site's domain API
(`$JS.<domain>.API`): the leaf link itself carries no mesh subjects (permissions.LEAF_DENIED),
so an event reaches the hub once, by sourcing, which resumes where it left off. The other
way round, each site's COMMANDS stream sources its devices' commands from the hub's
(mahavishnu.sites.runner, ADR 0013). `site remove` cuts a live link at once (cutoff.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import nats.errors
from nats.aio.client import Client

from certs import CertificateAuthority, IssuedRecord, certificate_uri, validate_identity
from core import subjects
from core.config import LeafSettings, Settings
from core.errors import MahavishnuError
from core.store.nats_errors import from_exception
from core.streams import StreamSource, StreamSpec
from mahavishnu.control.permissions import device_user
from mahavishnu.runtime.home import Home, reload_server, write_private
from mahavishnu.runtime.natsconf import User, render_users
from mahavishnu.runtime.provisioning import write_users

log = logging.getLogger("mahavishnu.sites")

SITE_FILE = "site.json"
USERS_FILE = "users.conf"
EVENTS_STREAM = "EVENTS"
LOCAL_HOSTS = ("localhost", "127.0.0.1")  # `site up` connects to its own server on loopback
DEFAULT_DEVICE_PORT = 4222
DEFAULT_RETENTION_S = LeafSettings().site_retention  # a bundle written before sites had a retention


class SiteError(MahavishnuError):
    """A site is unknown, exists already, or its bundle is damaged."""


@dataclass(frozen=True)
class Site:
    """One edge site as its bundle's site.json describes it."""

    name: str
    domain: str  # its JetStream domain: the hub reaches its API as $JS.<domain>.API
    hub_urls: tuple[str, ...]  # the hub's leaf node listener, dialled by the site's server
    host: str  # where the site's server listens for its devices
    port: int
    hosts: tuple[str, ...]  # names in the site's certificate: what devices dial
    devices: tuple[str, ...] = ()
    retention_s: float = DEFAULT_RETENTION_S  # how long the site's streams keep messages ([leaf] site_retention)

    @property
    def device_url(self) -> str:
        """The URL a device of this site connects to (first of its certificate's hosts)."""
        return f"tls://{self.hosts[0]}:{self.port}"

    @property
    def api(self) -> str:
        return f"$JS.{self.domain}.API"

    @property
    def server_name(self) -> str:
        """The site's leaf server's name: how the hub's LEAFZ lists its link."""
        return f"site-{self.name}"

    def to_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "hub_urls": list(self.hub_urls), "hosts": list(self.hosts)}

    @classmethod
    def from_json(cls, value: Any, where: Path) -> Site:
        """Raises SiteError naming the file when a field is missing or of the wrong type."""
        try:
            site = cls(
                name=validate_identity(str(value["name"])),
                domain=str(value["domain"]),
                hub_urls=tuple(str(u) for u in value["hub_urls"]),
                host=str(value["host"]),
                port=int(value["port"]),
                hosts=tuple(str(h) for h in value["hosts"]),
                devices=tuple(str(d) for d in value.get("devices", ())),
                retention_s=float(value.get("retention_s", DEFAULT_RETENTION_S)),
            )
        except (KeyError, TypeError, ValueError, MahavishnuError) as exc:
            raise SiteError(
                f"{where} is not a valid site description ({exc!r}): restore it from the control host"
            ) from exc
        if not site.hub_urls or not site.hosts:
            raise SiteError(f"{where} names no hub URL or no host: recreate the bundle on the control host")
        return site


def sites_dir(home: Home) -> Path:
    return home.root / "sites"


def bundle_dir(home: Home, name: str) -> Path:
    return sites_dir(home) / validate_identity(name)


def load(bundle: Path) -> Site:
    """The site of a bundle folder; SiteError when it is not one."""
    path = bundle / SITE_FILE
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SiteError(
            f"{bundle} is not a site bundle (no {SITE_FILE}): make one with `mahavishnu site add NAME` "
            "on the control host and copy its folder here"
        ) from None
    except (OSError, ValueError) as exc:
        raise SiteError(f"cannot read {path} ({exc}): copy the bundle again from the control host") from exc
    return Site.from_json(value, path)


def registered(home: Home) -> list[Site]:
    """Every site registered on this control host, by name."""
    folder = sites_dir(home)
    if not folder.is_dir():
        return []
    return [load(path) for path in sorted(folder.iterdir()) if (path / SITE_FILE).is_file()]


def api_of(home: Home, device_id: str) -> str:
    """The JetStream API prefix of the site `device_id` belongs to, "" for a device of the hub's own."""
    return next((site.api for site in registered(home) if device_id in site.devices), "")


def find(home: Home, name: str) -> Site:
    """The registered site `name`; SiteError saying how to list them otherwise."""
    folder = bundle_dir(home, name)
    if not (folder / SITE_FILE).is_file():
        raise SiteError(f"no site {name!r}: see `mahavishnu site list`, or add it with `mahavishnu site add {name}`")
    return load(folder)


# --- pure -----------------------------------------------------------------------------


def hub_leaf_urls(settings: Settings) -> tuple[str, ...]:
    """Where a site dials the hub: each certificate host of the hub at [leaf] port (pure).

    SiteError when the hub has no leaf node listener, saying how to enable one.
    """
    if not settings.leaf.port:
        raise SiteError(
            "the hub has no leaf node listener ([leaf] port = 0): set [leaf] port = 7422 (and [leaf] host to an "
            "address the sites reach) in mahavishnu.toml and restart `mahavishnu up`, or pass --hub-url"
        )
    return tuple(f"tls://{host}:{settings.leaf.port}" for host in settings.server.hosts)


def new_site(
    name: str,
    settings: Settings,
    *,
    hosts: Sequence[str] = (),
    host: str = "0.0.0.0",
    port: int = DEFAULT_DEVICE_PORT,
    hub_urls: Sequence[str] = (),
) -> Site:
    """The description of a new site (pure). SiteError for a name the mesh already uses."""
    validate_identity(name)
    if name == settings.mesh.name:
        raise SiteError(f"a site cannot be named like the mesh ({name!r}): choose another name")
    names = tuple(dict.fromkeys([*hosts, *LOCAL_HOSTS]))
    urls = tuple(hub_urls) or hub_leaf_urls(settings)
    return Site(
        name=name,
        domain=name,
        hub_urls=urls,
        host=host,
        port=port,
        hosts=names,
        retention_s=settings.leaf.site_retention,
    )


def site_users(site: Site, records: Sequence[IssuedRecord], now: datetime) -> tuple[User, ...]:
    """The users of a site's server (pure): the site itself (its runner, unrestricted) and
    every live certificate of its devices, confined exactly as on the hub."""
    users: list[User] = []
    for record in records:
        if not record.is_live(now):
            continue
        if record.kind == "site" and record.identity == site.name:
            users.append(User(certificate_uri(record.serial)))
        elif record.kind == "device" and record.identity in site.devices:
            users.append(device_user(record.identity, record.serial))
    return tuple(users)


def with_site_sources(streams: tuple[StreamSpec, ...], sites: Sequence[Site]) -> tuple[StreamSpec, ...]:
    """The hub's streams with EVENTS sourcing every site's EVENTS stream (pure)."""
    sources = tuple(StreamSource(EVENTS_STREAM, site.api) for site in sites)
    return tuple(dataclasses.replace(s, sources=sources) if s.name == EVENTS_STREAM and sources else s for s in streams)


# --- files ----------------------------------------------------------------------------


def add(home: Home, settings: Settings, site: Site) -> Path:
    """Issue the site's certificate, write its bundle, and let the hub's server accept its link.

    Returns the bundle folder. SiteError when the site exists; certs errors when the name
    is taken by another identity.
    """
    folder = bundle_dir(home, site.name)
    if (folder / SITE_FILE).exists():
        raise SiteError(f"site {site.name!r} exists already ({folder}): see `mahavishnu site list`")
    ca = CertificateAuthority.load(home.ca_dir)
    ca.issue_site(site.name, hosts=site.hosts, out_dir=folder, days=settings.certs.server_days)
    save(folder, site)
    write_bundle_users(home, ca, site)
    write_users(home, ca)  # the hub's users.conf now holds the site's leaf-only user
    reload_server(home)
    return folder


def save(folder: Path, site: Site) -> None:
    write_private(folder / SITE_FILE, json.dumps(site.to_json(), indent=2) + "\n")


def write_bundle_users(home: Home, ca: CertificateAuthority, site: Site) -> Path:
    """Regenerate a bundle's users.conf from the CA registry."""
    path = bundle_dir(home, site.name) / USERS_FILE
    write_private(path, render_users(site_users(site, ca.issued(), datetime.now(UTC))))
    return path


def refresh_bundles(home: Home, ca: CertificateAuthority) -> None:
    """Regenerate every site's users.conf (after a device of a site is enrolled, revoked or rotated)."""
    for site in registered(home):
        write_bundle_users(home, ca, site)


def assign_device(home: Home, name: str, device_id: str) -> Site:
    """Make `device_id` a device of site `name` (kept in its site.json); the updated site."""
    site = find(home, name)
    if device_id not in site.devices:
        site = dataclasses.replace(site, devices=(*site.devices, device_id))
        save(bundle_dir(home, name), site)
    return site


# --- the hub's stream -------------------------------------------------------------------


async def add_source(nc: Client, site: Site, *, timeout: float = 5.0) -> bool:
    """Make the hub's EVENTS stream source `site`'s, without a restart; False if it already did.

    Reads the stream's configuration as the server has it and updates only its sources,
    so no other option is lost. SiteError when the server refuses, StoreUnavailable when it does not answer.
    """
    info = await js_api(nc, f"$JS.API.STREAM.INFO.{EVENTS_STREAM}", b"", timeout=timeout)
    if "error" in info:
        raise SiteError(f"cannot read the hub's {EVENTS_STREAM} stream: {info['error'].get('description')}")
    config = info["config"]
    sources = config.get("sources") or []
    wanted = StreamSource(EVENTS_STREAM, site.api).as_config()
    if any(s.get("external", {}).get("api") == site.api for s in sources):
        return False
    config["sources"] = [*sources, wanted]
    reply = await js_api(nc, f"$JS.API.STREAM.UPDATE.{EVENTS_STREAM}", json.dumps(config).encode(), timeout=timeout)
    if "error" in reply:
        raise SiteError(f"cannot make {EVENTS_STREAM} source site {site.name}: {reply['error'].get('description')}")
    log.info("hub sources site", extra={"site": site.name, "api": site.api})
    return True


async def js_api(nc: Client, subject: str, payload: bytes, *, timeout: float) -> dict[str, Any]:
    """One JetStream API request, asked again while nobody answers it, until `timeout`.

    Right after a configuration reload (`site add` reloads the hub for the site's user)
    the server's JetStream API has been seen to have no responder for a moment.
    StoreUnavailable when it still has none at the deadline, or does not answer in time.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            reply = await nc.request(subject, payload, timeout=max(0.1, deadline - time.monotonic()))
        except nats.errors.NoRespondersError as exc:
            if time.monotonic() < deadline:
                await asyncio.sleep(0.1)  # a retry interval, bounded by the deadline
                continue
            raise from_exception(exc, doing=f"the JetStream API ({subject}, asked for {timeout:g} s)") from exc
        except (TimeoutError, nats.errors.Error) as exc:
            raise from_exception(exc, doing=f"the JetStream API ({subject})") from exc
        return dict(json.loads(reply.data))


# --- the hub's consumer of each site's commands (ADR 0013) ---------------------------------

COMMANDS_STREAM = "COMMANDS"
SOURCE_HEARTBEAT_NS = 1_000_000_000  # nats-server requires 1 s for a consumer that a source acks by flow control
SITE_MAX_ACK_PENDING = 1000


def commands_consumer(site: Site) -> dict[str, Any] | None:
    """The hub's durable consumer of `site`'s devices' commands, which the site's COMMANDS stream
    sources (pure); None for a site without devices (no filter would mean every command).

    The hub owns it, so its filters are the hub's word: a site gets its own devices' commands,
    delivered on its own subject, and may only restart it (subjects.hub_consumer_reset).
    """
    if not site.devices:
        return None
    return {
        "durable_name": subjects.site_consumer(site.name),
        "deliver_subject": subjects.site_commands(site.name),
        "deliver_policy": "all",
        "ack_policy": "flow_control",  # acknowledged by the source's flow control replies
        "flow_control": True,
        "idle_heartbeat": SOURCE_HEARTBEAT_NS,
        "max_ack_pending": SITE_MAX_ACK_PENDING,
        "filter_subjects": [subjects.device_commands(device) for device in site.devices],
    }


def consumer_matches(info: dict[str, Any], wanted: dict[str, Any] | None) -> bool:
    """Whether the consumer the hub has (its CONSUMER.INFO answer) is the one wanted (pure)."""
    if wanted is None:
        return "error" in info
    have = info.get("config") or {}
    return "error" not in info and sorted(have.get("filter_subjects") or []) == sorted(wanted["filter_subjects"])


async def ensure_commands_consumer(nc: Client, site: Site, *, timeout: float = 5.0) -> bool:
    """Create, update or delete the hub's consumer of `site`'s commands to match its devices; True if it changed.

    SiteError when the server refuses.
    """
    name = subjects.site_consumer(site.name)
    wanted = commands_consumer(site)
    info = await js_api(nc, f"$JS.API.CONSUMER.INFO.{COMMANDS_STREAM}.{name}", b"", timeout=timeout)
    if consumer_matches(info, wanted):
        return False
    if wanted is None:
        await delete_commands_consumer(nc, site, timeout=timeout)
        return True
    body = {"stream_name": COMMANDS_STREAM, "config": wanted}
    reply = await js_api(
        nc, f"$JS.API.CONSUMER.CREATE.{COMMANDS_STREAM}.{name}", json.dumps(body).encode(), timeout=timeout
    )
    if "error" in reply:
        raise SiteError(f"cannot keep site {site.name}'s consumer of commands: {reply['error'].get('description')}")
    log.info("hub delivers a site's commands", extra={"site": site.name, "devices": len(site.devices)})
    return True


async def delete_commands_consumer(nc: Client, site: Site, *, timeout: float = 5.0) -> None:
    """Remove the hub's consumer of `site`'s commands (none left is fine)."""
    name = subjects.site_consumer(site.name)
    reply = await js_api(nc, f"$JS.API.CONSUMER.DELETE.{COMMANDS_STREAM}.{name}", b"", timeout=timeout)
    if "error" in reply and reply["error"].get("code") != 404:
        raise SiteError(f"cannot remove site {site.name}'s consumer of commands: {reply['error'].get('description')}")


# --- keeping the sources attached -----------------------------------------------------

NO_CONSUMER = -1  # a source's "active" in the stream info while the hub has no consumer on it


def detached(info: dict[str, Any], known: Sequence[Site]) -> list[Site]:
    """The sites whose source has no consumer at the hub, or is missing from EVENTS (pure).

    A site that comes up after the hub's source gave up for a while waits out the server's
    retry backoff (measured: 26 s); these are the candidates to re-attach at once.
    """
    active = {
        source.get("external", {}).get("api"): source.get("active", NO_CONSUMER) for source in info.get("sources") or []
    }
    return [site for site in known if active.get(site.api, NO_CONSUMER) == NO_CONSUMER]


async def site_answers(nc: Client, site: Site, *, timeout: float = 1.0) -> bool:
    """Whether the site's JetStream API answers across the leaf link right now."""
    try:
        await nc.request(f"{site.api}.INFO", b"", timeout=timeout)
    except (TimeoutError, nats.errors.Error):
        return False
    return True


async def _update_sources(nc: Client, config: dict[str, Any], sources: list[dict[str, Any]], timeout: float) -> None:
    config["sources"] = sources
    reply = await js_api(nc, f"$JS.API.STREAM.UPDATE.{EVENTS_STREAM}", json.dumps(config).encode(), timeout=timeout)
    if "error" in reply:
        raise SiteError(f"cannot update the sources of {EVENTS_STREAM}: {reply['error'].get('description')}")


async def reattach(nc: Client, site: Site, *, timeout: float = 5.0) -> None:
    """Detach and attach the site's source again, the same source under the same name.

    Exactly once still holds: a source added to a stream starts after the last message the
    stream holds from it (each copied message records its source and sequence in a header),
    and the event ids deduplicate within the duplicate window besides.
    """
    info = await js_api(nc, f"$JS.API.STREAM.INFO.{EVENTS_STREAM}", b"", timeout=timeout)
    if "error" in info:
        raise SiteError(f"cannot read the hub's {EVENTS_STREAM} stream: {info['error'].get('description')}")
    config = info["config"]
    others = [s for s in config.get("sources") or [] if s.get("external", {}).get("api") != site.api]
    await _update_sources(nc, config, others, timeout)
    await _update_sources(nc, config, [*others, StreamSource(EVENTS_STREAM, site.api).as_config()], timeout)
    log.info("re-attached a site's source", extra={"site": site.name})


async def keep_sources(nc: Client, home: Home, stop: asyncio.Event, *, interval: float = 2.0) -> None:
    """Until `stop`: keep each site's consumer of commands to its devices, and re-attach a site's
    source when it has had no consumer for two checks in a row while the site answers (its link
    is up). Errors are logged, never raised."""
    suspects: set[str] = set()
    while not stop.is_set():
        try:
            known = registered(home)
            for site in known:  # a device enrolled for a site since: its commands go there too
                await ensure_commands_consumer(nc, site)
            if known:
                reply = await nc.request(f"$JS.API.STREAM.INFO.{EVENTS_STREAM}", b"", timeout=5)
                stalled = {s.name: s for s in detached(json.loads(reply.data), known)}
                for name in suspects & stalled.keys():
                    if await site_answers(nc, stalled[name]):
                        await reattach(nc, stalled[name])
                suspects = set(stalled)
        except (MahavishnuError, TimeoutError, nats.errors.Error, ValueError, KeyError) as exc:
            log.warning("cannot check the sites' sources; trying again", extra={"reason": str(exc)})
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)


# --- removing a site --------------------------------------------------------------------


def removed_dir(home: Home) -> Path:
    return home.root / "sites-removed"


def copied_of(info: dict[str, Any], site: Site) -> int | None:
    """The last sequence of the site's stream the hub has copied (0: none yet), or None when
    the hub does not source the site (pure)."""
    for source in info.get("sources") or []:
        if source.get("external", {}).get("api") == site.api:
            return int(source.get("seq") or 0)
    return None


def left_at_site(copied: int | None, site_last: int | None, site: Site) -> str:
    """Why removing the site now would leave events behind, or "" (pure)."""
    if copied is None:
        return ""  # not sourced: nothing the hub was going to copy
    if site_last is None:
        return (
            f"cannot tell whether the hub holds all of site {site.name}'s events: the site does not answer "
            "(its server or its link is down); bring it up and wait, or pass --force"
        )
    if site_last > copied:
        return (
            f"the hub has not yet copied {site_last - copied} event(s) of site {site.name}: wait until "
            "`mahavishnu site list` shows it caught up, or pass --force to leave them at the site"
        )
    return ""


async def site_last_sequence(nc: Client, site: Site, *, timeout: float = 2.0) -> int | None:
    """The last sequence of the site's EVENTS stream, asked across the link; None if it does not answer."""
    try:
        reply = await nc.request(f"{site.api}.STREAM.INFO.{EVENTS_STREAM}", b"", timeout=timeout)
        return int(json.loads(reply.data)["state"]["last_seq"])
    except (TimeoutError, nats.errors.Error, ValueError, KeyError):
        return None


async def remove_source(nc: Client, site: Site, *, force: bool = False, timeout: float = 5.0) -> None:
    """Stop sourcing `site` at a running hub; the events already copied stay.

    SiteError when the site still holds events the hub has not copied, or cannot say, unless `force`.
    """
    info = await js_api(nc, f"$JS.API.STREAM.INFO.{EVENTS_STREAM}", b"", timeout=timeout)
    if "error" in info:
        raise SiteError(f"cannot read the hub's {EVENTS_STREAM} stream: {info['error'].get('description')}")
    if not force and (why := left_at_site(copied_of(info, site), await site_last_sequence(nc, site), site)):
        raise SiteError(why)
    config = info["config"]
    others = [s for s in config.get("sources") or [] if s.get("external", {}).get("api") != site.api]
    if len(others) != len(config.get("sources") or []):
        await _update_sources(nc, config, others, timeout)
    await delete_commands_consumer(nc, site, timeout=timeout)  # nothing more is delivered to it


def remove(home: Home, name: str) -> Path:
    """Revoke the site's certificate (the hub refuses its link from now on) and move its bundle
    out of the registry, to HOME/sites-removed/<name>; that folder's path."""
    site = find(home, name)
    ca = CertificateAuthority.load(home.ca_dir)
    ca.revoke(site.name, reason="cessation_of_operation")
    write_users(home, ca)
    reload_server(home)
    target = removed_dir(home) / f"{site.name}-{datetime.now(UTC):%Y%m%dT%H%M%SZ}"
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    bundle_dir(home, name).rename(target)
    return target
