"""The identity service of `up`: the auth callout that admits devices, and the cut-off of revoked ones."""

from __future__ import annotations

from dataclasses import dataclass

from nats.aio.client import Client
from nats.aio.subscription import Subscription

from mahavishnu.identity import issuer
from mahavishnu.identity.callout import CalloutService
from mahavishnu.identity.cutoff import follow_revocations
from mahavishnu.identity.fleet import FleetFiles
from mahavishnu.runtime.home import Home


@dataclass
class IdentityService:
    callout: CalloutService
    revocations: Subscription

    async def stop(self) -> None:
        await self.revocations.unsubscribe()
        await self.callout.stop()


async def start_identity(nc: Client, system: Client, home: Home, *, servers: int = 1) -> IdentityService:
    """Answer the server's authorization requests on `nc` (control) and cut off revoked devices through `system`.

    `servers` is how many nodes the mesh has: a cut-off asks each of them for the
    revoked certificate's connections.
    """
    fleet = FleetFiles(home)
    callout = CalloutService(nc, issuer.signer(home), fleet.current)
    await callout.start()
    revocations = await follow_revocations(nc, system, lambda: fleet.current().revoked, servers=servers)
    return IdentityService(callout, revocations)
