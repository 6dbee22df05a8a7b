"""The ASGI TLS extension (`scope["extensions"]["tls"]`) for uvicorn, which does not provide it.

An application that authenticates by client certificate needs the peer certificate of
the connection a request came on. uvicorn (0.54) builds each request's scope inside its
protocol and exposes neither the transport nor the TLS extension to the application
(uvicorn issues #400, #745 and #2306; the pull requests implementing the extension,
#1119, #2586 and #3132, are not merged). Its supported extension point is the protocol
class (`uvicorn.Config(http=<class>)`), so `TLSScopeH11Protocol` is uvicorn's h11
protocol plus one step: when a connection is made (after the TLS handshake) it reads
the verified peer certificate once from `transport.get_extra_info("ssl_object")` and
wraps the application so that every request of that connection carries it, in the
shape the ASGI TLS extension specifies. The application reads only the scope, so it
does not depend on uvicorn; once uvicorn fills the extension itself this module goes.

Only what the ssl module can tell is filled in: `client_cert_chain` holds the client's
own certificate (PEM) and `tls_version` the protocol version; a certificate that fails
verification never gets here, since it ends the handshake.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

_TLS_VERSIONS = {"TLSv1.2": 0x0303, "TLSv1.3": 0x0304}  # the numbers the extension wants


def tls_extension(ssl_object: ssl.SSLObject | ssl.SSLSocket | None) -> dict[str, Any] | None:
    """The extension's value for a connection, or None for one without TLS."""
    if ssl_object is None:
        return None
    peer = ssl_object.getpeercert(binary_form=True)
    return {
        "server_cert": None,
        "client_cert_chain": [ssl.DER_cert_to_PEM_cert(peer)] if peer else [],
        "client_cert_name": None,
        "client_cert_error": None,
        "tls_version": _TLS_VERSIONS.get(ssl_object.version() or ""),
        "cipher_suite": None,
    }


def with_tls_extension(app: ASGIApp, tls: dict[str, Any]) -> ASGIApp:
    """`app` with `tls` in every scope it is called with (a copy each time: one request cannot change another's)."""

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        scope["extensions"] = {**(scope.get("extensions") or {}), "tls": {**tls}}
        await app(scope, receive, send)

    return wrapped


class TLSScopeH11Protocol(H11Protocol):
    """uvicorn's h11 protocol that gives the application the ASGI TLS extension; see the module docstring."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        tls = tls_extension(transport.get_extra_info("ssl_object"))
        if tls is not None:  # one protocol object per connection: wrapping its app scopes it to this connection
            self.app = with_tls_extension(self.app, tls)
