"""Who sent a request that crossed accounts (pure): the server's Nats-Request-Info header, parsed in one place.

When an account imports a service with `share: true` (OPS imports `mesh.q.>` and
`mesh.shell.>` from MESH), nats-server adds a `Nats-Request-Info` header to every request
that crosses the import: JSON naming the requesting connection as the server knows it.
A real one (nats-server 2.15, captured from an operator connecting with its certificate):

    {"start": "2026-12-06T21:55:37.932741802Z", "host": "127.0.0.1", "id": 9, "acc": "OPS",
     "user": "mahavishnu:cert:6cba...", "name": "cap-op-other", "lang": "python3", "ver": "2.16.0",
     "rtt": 6096437, "server": "mahavishnu", "kind": "Client", "client_type": "nats"}

`user` is what the server mapped the client's certificate to (`verify_and_map`: the
certificate's URI SAN); `server`, `acc`, `id` and `start` name the connection (client ids
restart with the server, so `start` tells a reused id apart). A request from inside the
serving account crosses no import and carries no header; what that means is the caller's
decision (the queries: the control services; the remote terminal: nobody it serves).

The identity comes from the server, never from a request body. Errors:

    RequestInfoError        (a MahavishnuError)
    ├── NoRequestInfo       the request carries no header: it did not cross an import
    └── BadRequestInfo      the header is not the server's JSON (not JSON, a field of the wrong type, one missing)
"""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from core.errors import MahavishnuError

HEADER = "Nats-Request-Info"


class RequestInfoError(MahavishnuError):
    """A request does not name its requester the way the server does."""


class NoRequestInfo(RequestInfoError):
    """The request has no Nats-Request-Info header: it came from inside the serving account."""


class BadRequestInfo(RequestInfoError):
    """The Nats-Request-Info header is there but is not the server's description of a connection."""


class Requester(msgspec.Struct, frozen=True, kw_only=True):
    """The requesting connection, as the server describes it; unknown fields are ignored.

    `user` is empty for a connection the server authenticated without a user name.
    `start` is kept as the server wrote it (RFC 3339 with nanoseconds, more than datetime holds).
    """

    server: str  # the server the requester is connected to (client ids are per server)
    account: str = msgspec.field(name="acc")
    cid: int = msgspec.field(name="id")
    start: str = ""  # when the connection was made: tells a client id reused after a restart apart
    user: str = ""
    name: str = ""  # the name the client gave its connection (not proof of anything)


_decoder = msgspec.json.Decoder(Requester)


def parse_request_info(header: str | bytes | None) -> Requester:
    """The requester a Nats-Request-Info header names.

    Raises NoRequestInfo without a header (None) and BadRequestInfo when it is not the
    server's JSON: empty, not JSON at all, or `server`, `acc` or `id` missing or of the wrong
    type. An empty header is bad, not missing: only a request without one is from inside.
    """
    if header is None:
        raise NoRequestInfo(f"the request has no {HEADER} header: it did not come through an account's import")
    try:
        return _decoder.decode(header)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise BadRequestInfo(f"the {HEADER} header does not name a connection as the server does: {exc}") from None


def requester_of(headers: Mapping[str, str] | None) -> Requester:
    """The requester named by a request's headers (a micro Request's or a Msg's `headers`); see parse_request_info."""
    return parse_request_info((headers or {}).get(HEADER))
