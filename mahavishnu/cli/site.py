"""`mahavishnu site ...`: register edge sites (control host) and run one (edge host)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
from pathlib import Path

from core.config import Settings
from core.errors import MahavishnuError
from core.logs import configure_logging
from core.store import connect
from mahavishnu.runtime.home import Home
from mahavishnu.sites import hub as sites


def add(site: argparse.ArgumentParser) -> None:
    actions = site.add_subparsers(dest="site_command", required=True, metavar="ACTION")

    adding = actions.add_parser("add", help="issue a site's certificate and write its bundle (control host)")
    adding.add_argument("name", help="site name: [a-z0-9][a-z0-9-]{0,62}; also its JetStream domain")
    adding.add_argument(
        "--host", action="append", default=[], help="name or address devices dial at the site (repeatable)"
    )
    adding.add_argument("--listen", default="0.0.0.0", help="address the site's server listens on (default 0.0.0.0)")
    adding.add_argument("--port", type=int, default=sites.DEFAULT_DEVICE_PORT, help="its port for devices (4222)")
    adding.add_argument(
        "--hub-url", action="append", default=[], help="where the site dials the hub (default: [leaf] of this mesh)"
    )
    adding.set_defaults(handler=_add)

    actions.add_parser("list", help="the registered sites and their devices").set_defaults(handler=_list)

    remove = actions.add_parser("remove", help="revoke a site and stop sourcing it (its copied events stay)")
    remove.add_argument("name")
    remove.add_argument("--force", action="store_true", help="even if the hub has not copied all its events yet")
    remove.set_defaults(handler=_remove)

    up = actions.add_parser("up", help="run a site from its bundle folder until Ctrl-C (edge host)")
    up.add_argument("dir", help="the bundle folder copied from the control host")
    up.add_argument("--port", type=int, help="override the bundle's port for devices")
    up.add_argument(
        "--probe-port", type=int, default=0, help="serve /health, /ready and /metrics on this port (default: none)"
    )
    up.add_argument("--probe-host", default="127.0.0.1", help="where the probes listen (default 127.0.0.1)")
    up.set_defaults(handler=_up)


async def _add(home: Home, settings: Settings, args: argparse.Namespace) -> int:
    site = sites.new_site(args.name, settings, hosts=args.host, host=args.listen, port=args.port, hub_urls=args.hub_url)
    folder = sites.add(home, settings, site)
    sourced = await _source_now(home, settings, site)
    print(f"site {site.name}: bundle in {folder} (JetStream domain {site.domain}, hub {', '.join(site.hub_urls)})")
    print(
        f"  copy it to the edge host (e.g. `scp -r {folder} edge-host:{site.name}`; key.pem is the site's "
        f"private key: keep it 0600) and run `mahavishnu site up {site.name}` there"
    )
    print(f"  devices: `mahavishnu device enroll ID --site {site.name}` connect to {site.device_url}")
    if sourced:
        print("  the running hub sources the site's events from now on")
    else:
        print("  the hub is not running: the next `mahavishnu up` sources the site's events")
    return 0


async def _source_now(home: Home, settings: Settings, site: sites.Site) -> int:
    """Add the site's source to a running hub (1), or 0 when no hub answers (up adds it at start)."""
    try:
        nc = await connect(home.control_identity(settings), name="mahavishnu-site", reconnect=False)
    except MahavishnuError:
        return 0
    try:
        await sites.add_source(nc, site)
    finally:
        await nc.close()
    return 1


async def _list(home: Home, settings: Settings, args: argparse.Namespace) -> int:
    known = sites.registered(home)
    states = await _states(home, settings, known) if known else {}
    for site in known:
        devices = ", ".join(site.devices) or "no devices"
        print(
            f"{site.name}  domain {site.domain}  devices at {site.device_url}  hub {site.hub_urls[0]}  "
            f"{states.get(site.name, 'hub not running')}  {devices}"
        )
    return 0


async def _states(home: Home, settings: Settings, known: list[sites.Site]) -> dict[str, str]:
    """Each site as the running hub sees it: how far it copied, how far the site is (if it answers)."""
    try:
        nc = await connect(home.control_identity(settings), name="mahavishnu-site", reconnect=False)
    except MahavishnuError:
        return {}
    try:
        info = json.loads((await nc.request("$JS.API.STREAM.INFO.EVENTS", b"", timeout=5)).data)
        states = {}
        for site in known:
            copied = sites.copied_of(info, site)
            last = await sites.site_last_sequence(nc, site)
            at_site = "site not answering" if last is None else f"site at {last}"
            states[site.name] = "not sourced" if copied is None else f"hub copied up to {copied}, {at_site}"
        return states
    finally:
        await nc.close()


async def _remove(home: Home, settings: Settings, args: argparse.Namespace) -> int:
    from mahavishnu.sites import cutoff  # the system account's requests: only `site remove` makes them

    site = sites.find(home, args.name)
    running = await _unsource(home, settings, site, args.force)
    try:
        system = await connect(home.system_identity(settings), name="mahavishnu-site", reconnect=False)
    except MahavishnuError:
        system = None  # the hub is not running: no live link to cut
    try:
        servers = max(1, settings.server.cluster)
        before = await cutoff.config_loads(system, servers=servers) if system is not None else {}
        folder = sites.remove(home, site.name)
        cut = await cutoff.cut_off(system, site, before=before, servers=servers) if system is not None else 0
    finally:
        if system is not None:
            await system.close()
    print(f"site {site.name} removed: its certificate is revoked, its bundle moved to {folder}")
    print(
        f"  the hub no longer sources it; the events it copied stay; live links cut: {cut}"
        if running
        else "  the hub is not running: the next `mahavishnu up` no longer sources it"
    )
    return 0


async def _unsource(home: Home, settings: Settings, site: sites.Site, force: bool) -> int:
    try:
        nc = await connect(home.control_identity(settings), name="mahavishnu-site", reconnect=False)
    except MahavishnuError:
        return 0
    try:
        await sites.remove_source(nc, site, force=force)
    finally:
        await nc.close()
    return 1


async def _up(home: Home, settings: Settings, args: argparse.Namespace) -> int:
    configure_logging(level="info", fmt="text")
    return await _up_until_signal(Path(args.dir), args.port, (args.probe_host, args.probe_port))


async def _up_until_signal(bundle: Path, port: int | None, probes: tuple[str, int]) -> int:
    from mahavishnu.sites import runner as site_runner  # the supervisor and probes: only `site up` runs them

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        host, probe_port = probes
        return await site_runner.run(
            bundle, stop, port=port, out=lambda line: print(line, flush=True), probe_host=host, probe_port=probe_port
        )
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(ValueError):
                loop.remove_signal_handler(sig)
