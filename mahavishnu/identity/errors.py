"""The identity service's errors: what it could not read of the server's authorization requests, and a claim refused."""

from __future__ import annotations

from core.errors import MahavishnuError, ServiceRefusal


class CalloutError(MahavishnuError):
    """An authorization request from the server could not be read (counted and left unanswered)."""


class MalformedToken(CalloutError, ValueError):
    """Not a NATS JWT."""


class BadRequest(CalloutError, ValueError):
    """A NATS JWT, but not an authorization request this service can decide on."""


class ProvisioningRefused(ServiceRefusal):
    """up's provisioning service refused a device's claim request (a micro error: code and description)."""
