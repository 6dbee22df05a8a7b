"""The identity service's errors: what it could not read of the server's authorization requests."""

from __future__ import annotations

from core.errors import MahavishnuError


class CalloutError(MahavishnuError):
    """An authorization request from the server could not be read (counted and left unanswered)."""


class MalformedToken(CalloutError, ValueError):
    """Not a NATS JWT."""


class BadRequest(CalloutError, ValueError):
    """A NATS JWT, but not an authorization request this service can decide on."""
