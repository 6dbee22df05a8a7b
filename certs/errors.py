"""The errors the certificate authority raises on purpose; their place in the whole tree is drawn in core.errors.

Every message is one line that says what is wrong and what to do; the CLI prints it
as `error: <message>` and exits 1.

`cryptography`'s and the file system's errors are translated into these where they are
caught, with `raise ... from exc` so the cause stays in the chain.
"""

from __future__ import annotations

from core.errors import MahavishnuError


class CertError(MahavishnuError):
    """Base of every error of the `certs` package."""


class NoCAError(CertError):
    """The CA directory does not hold a CA: run `mahavishnu ca init` first."""


class CAExistsError(CertError):
    """`init` was asked to create a CA where one already exists; it never overwrites a CA key."""


class CorruptCAError(CertError):
    """A file of the CA directory is unreadable, malformed, or ca.pem and ca.key do not match."""


class InvalidIdError(CertError):
    """An identity, certificate kind, host name, revocation reason or organisation is malformed."""


class BadCSRError(CertError):
    """A certificate signing request is unparsable, its signature does not verify, or its CN is wrong."""


class AlreadyIssuedError(CertError):
    """The identity already holds a live certificate: revoke it or rotate instead."""


class NotIssuedError(CertError):
    """The identity or serial is unknown to the CA, or has no live certificate."""
