"""The identity services of `up`: the auth callout that admits devices, the cut-off of revoked ones, and the
provisioning of devices by claim (started once the streams exist: it reads the claims' events)."""

from __future__ import annotations

from dataclasses import dataclass

from nats.aio.client import Client
from nats.aio.subscription import Subscription

from core.config import Settings
from core.store import EventStore
from mahavishnu.identity import issuer
from mahavishnu.identity.callout import CalloutService
from mahavishnu.identity.cutoff import follow_revocations
from mahavishnu.identity.decision import Refusal, Request, refusal_audit
from mahavishnu.identity.fleet import FleetFiles
from mahavishnu.identity.provisioning import Limits, ProvisioningService
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

    Each refusal that names an identity is audited (on `nc`, the service's own trail).

    `servers` is how many nodes the mesh has: a cut-off asks each of them for the
    revoked certificate's connections.
    """
    fleet = FleetFiles(home)
    trail = EventStore(nc).audit  # a writer of its own, on the identity service's loop

    async def audit(request: Request, refusal: Refusal) -> None:
        await trail.record(**refusal_audit(request, refusal))

    callout = CalloutService(nc, issuer.signer(home), fleet.current, audit=audit)
    await callout.start()
    revocations = await follow_revocations(nc, system, lambda: fleet.current().revoked, servers=servers)
    return IdentityService(callout, revocations)


async def start_provisioning(
    store: EventStore,
    system: Client,
    home: Home,
    settings: Settings,
    *,
    port: int | None = None,
    servers: int = 1,
    limits: Limits | None = None,
    version: str = "0.0.0",
) -> ProvisioningService:
    """Answer devices' claims on mesh.provision.* (a connection of its own, as control), appending through `store`.

    `system` cuts a revoked claim's connections off; `port` is the server's when a test
    names it (the settings' otherwise).
    """
    return await ProvisioningService.open(
        home.control_identity(settings, port),
        store,
        home,
        settings,
        system=system,
        servers=servers,
        limits=limits,
        version=version,
    )
