"""The remote terminal's error: a refusal or a failure, as micro carries it to the operator.

ShellError is a ServiceRefusal (core.errors): a MahavishnuError and a nats micro
ServiceError. The broker's endpoints raise it and micro answers the request with it
(`Nats-Service-Error-Code: 403`, `Nats-Service-Error: <description>`, an empty body), so
`nats req` shows it as it is; the operator's client raises it again from those headers and
the CLI prints `error: <description>`. Codes: 400 a bad body, 403 not allowed, 404 no such
session, 409 the session has ended, 500 a bug (no details), 502 the device answered
nonsense, 503 device offline or no broker, 504 no answer in time.
"""

from __future__ import annotations

from core.errors import ServiceRefusal


class ShellError(ServiceRefusal):
    """A terminal request was refused or failed; `code` is the micro error code it travels with ("403", "404", ...)."""

    def __init__(self, code: int | str, description: str) -> None:
        super().__init__(int(code), description)
