"""The remote terminal's error: a refusal or a failure, as micro carries it to the operator.

    MahavishnuError ─┐
    ServiceError ────┴── ShellError   code "403" and a one-line description

The broker's endpoints raise it and nats micro answers the request with it
(`Nats-Service-Error-Code: 403`, `Nats-Service-Error: <description>`, an empty body), so
`nats req` shows it as it is; the operator's client raises it again from those headers and
the CLI prints `error: <description>`. Codes: 400 a bad body, 403 not allowed, 404 no such
session, 409 the session has ended, 500 a bug (no details), 502 the device answered
nonsense, 503 device offline or no broker, 504 no answer in time.
"""

from __future__ import annotations

from nats.micro.request import ServiceError

from core.errors import MahavishnuError


class ShellError(ServiceError, MahavishnuError):
    """A terminal request was refused or failed; `code` is the micro error code it travels with ("403", "404", ...).

    str() is the description alone, as for every MahavishnuError.
    """

    def __init__(self, code: int | str, description: str) -> None:
        ServiceError.__init__(self, code=str(code), description=description)
        MahavishnuError.__init__(self, description)
