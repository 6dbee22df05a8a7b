"""Who is calling the HTTP door: a bearer token, a client certificate, or both (the rules are pure).

A request brings at most two credentials: `Authorization: Bearer <token>`, and over
HTTPS a client certificate that the TLS handshake already verified against the mesh
CA (the server asks for one but does not require it, so a browser with only a token
still gets in). Every credential sent must hold: a refused certificate is not rescued
by a good token, and when both are sent they must name the same operator. The lookups
that turn a token or a certificate into a caller (tokens.json, the CA registry and
roles.json) are given by the caller of `authenticator`: this package does not know
where they live.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from starlette.requests import Request

from projections.authz import Caller, Refusal

NO_CREDENTIALS = (
    "authenticate with an operator's client certificate (HTTPS; `mahavishnu operator add ID --role R` issues one) "
    "or with `Authorization: Bearer <token>` (`mahavishnu operator token ID`)"
)
NO_TOKEN = "send `Authorization: Bearer <token>` (`mahavishnu operator token ID`)"


@dataclass(frozen=True)
class Credentials:
    """What one request brings; `certificate` is the PEM of a handshake-verified client certificate."""

    token: str = ""
    certificate: str | None = None

    @property
    def method(self) -> str:
        """How the caller authenticated, for the audit trail: certificate, token or certificate+token."""
        return "+".join(name for name, sent in (("certificate", self.certificate), ("token", self.token)) if sent)


TokenLookup = Callable[[str], Caller | None]
CertificateLookup = Callable[[str], Caller | Refusal]
Authenticator = Callable[[Credentials], Caller | Refusal]


def credentials_of(request: Request) -> Credentials:
    """The credentials of a request: its bearer token and the client certificate from the ASGI TLS extension."""
    header = request.headers.get("authorization", "")
    token = header[7:].strip() if header.lower().startswith("bearer ") else ""
    tls = (request.scope.get("extensions") or {}).get("tls")
    chain = list(tls.get("client_cert_chain") or ()) if isinstance(tls, dict) else []
    return Credentials(token=token, certificate=chain[0] if chain else None)


def authenticator(*, by_token: TokenLookup, by_certificate: CertificateLookup) -> Authenticator:
    """The door's authentication from the two lookups; see the module docstring for the rules."""

    def authenticate(credentials: Credentials) -> Caller | Refusal:
        from_certificate = by_certificate(credentials.certificate) if credentials.certificate else None
        if isinstance(from_certificate, Refusal):
            return from_certificate
        from_token = by_token(credentials.token) if credentials.token else None
        if credentials.token and from_token is None:
            return Refusal(401, f"the bearer token is not known (replaced by a newer one?); {NO_TOKEN}")
        if from_certificate and from_token and from_certificate.identity != from_token.identity:
            return Refusal(
                401,
                f"the client certificate names {from_certificate.identity} but the token {from_token.identity}: "
                "send one of them",
                actor=from_certificate.identity,
            )
        caller = from_certificate or from_token
        if caller is None:
            return Refusal(401, NO_CREDENTIALS)
        return caller

    return authenticate
