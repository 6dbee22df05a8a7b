"""Cutting a removed site's live leaf link at once, instead of when it next drops.

Revoking the site's certificate and reloading the hub refuses its next link, but nats-server
does not re-check a leaf connection that is up when its user goes away (it re-checks
clients only). So, once every server of the hub has reloaded (its VARZ config_load_time
moved on), each server that holds a link from the site's leaf server (LEAFZ: the MESH
account's links, by the remote server's name) is asked to kick it
(`$SYS.REQ.SERVER.<id>.KICK`, which closes leaf connections too). The site redials and
is refused from then on.

The name is what the site's own configuration says (`site-<name>`, rendered by `site up`):
a site that renamed its server would escape this kick, but not the refusal at its next
link; a site that took another's name only has its own link kicked, and redials.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Mapping
from typing import Any

from nats.aio.client import Client

from mahavishnu.identity.cutoff import kick
from mahavishnu.identity.decision import ACCOUNT
from mahavishnu.observability.agents_online import ask_servers
from mahavishnu.sites.hub import Site, SiteError

log = logging.getLogger("mahavishnu.sites")

LEAFZ = "$SYS.REQ.SERVER.PING.LEAFZ"
VARZ = "$SYS.REQ.SERVER.PING.VARZ"
ANSWER_WINDOW_S = 1.0  # how long the servers get to answer one round


def _answers(raw: list[bytes]) -> list[dict[str, Any]]:
    found = []
    for answer in raw:
        try:
            found.append(dict(json.loads(answer)))
        except ValueError:
            log.warning("unreadable answer from a server of the hub")
    return found


def load_times(answers: list[dict[str, Any]]) -> dict[str, str]:
    """Each server's id and when it last loaded its configuration, from VARZ answers (pure)."""
    return {
        a["server"]["id"]: str(a.get("data", {}).get("config_load_time", ""))
        for a in answers
        if isinstance(a.get("server"), dict) and "id" in a["server"]
    }


def reloaded(before: Mapping[str, str], now: Mapping[str, str]) -> bool:
    """Whether every server seen before has loaded its configuration since (pure)."""
    return all(server in now and now[server] != loaded for server, loaded in before.items())


def links_of(answers: list[dict[str, Any]], site: Site) -> list[tuple[str, int]]:
    """(server id, connection id) of each link of `site`'s leaf server in the MESH account, from LEAFZ (pure)."""
    found = []
    for answer in answers:
        server = (answer.get("server") or {}).get("id")
        for leaf in (answer.get("data") or {}).get("leafs") or []:
            if server and leaf.get("name") == site.server_name and leaf.get("account") == ACCOUNT:
                found.append((str(server), int(leaf["id"])))
    return found


async def config_loads(system: Client, *, servers: int) -> dict[str, str]:
    """When each server of the hub last loaded its configuration (before a change that reloads it)."""
    return load_times(_answers(await ask_servers(system, servers=servers, timeout=ANSWER_WINDOW_S, subject=VARZ)))


async def cut_off(system: Client, site: Site, *, before: Mapping[str, str], servers: int, timeout: float = 10.0) -> int:
    """Once every server has reloaded since `before`, kick every live link of `site`; how many were kicked.

    SiteError when the servers have not reloaded by `timeout` (the link would be let back in).
    """
    deadline = time.monotonic() + timeout
    while not reloaded(before, await config_loads(system, servers=servers)):
        if time.monotonic() > deadline:
            raise SiteError(
                f"the hub's server did not reload its users within {timeout:g} s, so site {site.name}'s live link "
                "was not cut: check `mahavishnu up` runs, then restart it to drop the link"
            )
        await asyncio.sleep(0.1)  # a poll interval, bounded by the deadline
    request = json.dumps({"account": ACCOUNT}).encode()
    answers = _answers(
        await ask_servers(system, servers=servers, timeout=ANSWER_WINDOW_S, request=request, subject=LEAFZ)
    )
    links = links_of(answers, site)
    for server_id, connection_id in links:
        await kick(system, server_id, connection_id)
    log.info("removed site's live link cut", extra={"site": site.name, "links": len(links)})
    return len(links)
