"""Who may run which query (pure). The caller comes from the connection, never from the request.

Roles: admin (everything), operator and viewer (devices, commands, campaigns, updates, the code
index, and how far behind the read models are; an operator also sends commands from the
dashboard), auditor (the audit trail, and campaigns and updates: what was rolled out, by
whom, how it went). The control services, in the mesh's own account, act as admin; devices have no
permission to send queries at all.

Auditors may also list and get the devices: which exist, and whether they hold personal
data. Which personal fields of a device each role then sees is projections.personal's rule.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from core.requester import BadRequestInfo, NoRequestInfo, parse_request_info

ROLES = ("admin", "operator", "auditor", "viewer")
READ_FLEET = frozenset(
    {
        "devices.list",
        "devices.get",
        "devices.summary",
        "telemetry.history",
        "commands.get",
        "commands.list",
        "projections.status",
    }
)
# Fleet campaigns: operators run them (mahavishnu campaign, with their own certificates),
# and every role reads how they go.
READ_CAMPAIGNS = frozenset({"campaigns.list", "campaigns.get"})
# Software updates: what can be installed and how far the fleet is, read like the campaigns
# that roll them out (auditors too: what was shipped to the fleet).
READ_UPDATES = frozenset({"artifacts.list", "artifacts.get", "updates.compliance"})
# The code index: the code itself (redacted), for the people who run and build the fleet.
# Auditors get the trail of who read it, not the code.
READ_CODE = frozenset({"code.symbol", "code.search", "code.context", "code.files", "code.repos"})
# Not a query: the HTTP door's one write, a command sent from the dashboard (projections.http_commands).
SEND_COMMAND = "commands.send"
PERMISSIONS: dict[str, frozenset[str] | None] = {  # None: every query, and sending commands
    "admin": None,
    "operator": READ_FLEET | READ_CODE | READ_CAMPAIGNS | READ_UPDATES | {SEND_COMMAND},
    "viewer": READ_FLEET | READ_CODE | READ_CAMPAIGNS | READ_UPDATES,
    # The devices too, for an audit of the personal data the fleet holds: that a device has
    # an owner or a location, never which (projections.personal).
    "auditor": frozenset({"audit.search", "audit.verify", "devices.list", "devices.get"})
    | READ_CAMPAIGNS
    | READ_UPDATES,
}


@dataclass(frozen=True)
class Caller:
    identity: str
    role: str


@dataclass(frozen=True)
class Refusal:
    """Why a credential gets no caller: `status` 401 (it does not hold) or 403 (a known identity that may not query).

    `actor` names who was refused when the credential says so (a certificate); it is
    audited. It stays empty for anonymous requests, which are not audited so that they
    cannot flood the trail.
    """

    status: int
    reason: str
    actor: str = ""


CONTROL = Caller("control", "admin")


def allowed(caller: Caller, query: str) -> bool:
    if caller.role not in PERMISSIONS:
        return False
    permitted = PERMISSIONS[caller.role]
    return permitted is None or query in permitted


def caller_of(request_info: str | None, resolve: Callable[[str], Caller | None]) -> Caller | None:
    """The caller of a request from its Nats-Request-Info header (set by the server for imported services).

    No header: the request came from inside the mesh's own account, where only the control
    services may send queries. `resolve` maps the server's user name (the certificate's
    URI SAN) to a caller, or None for an unknown one; a header that is not the server's
    (core.requester) or names no user gives None too.
    """
    try:
        user = parse_request_info(request_info).user
    except NoRequestInfo:
        return CONTROL
    except BadRequestInfo:
        return None
    return resolve(user) if user else None
