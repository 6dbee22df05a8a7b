"""The one place where nats-py's exceptions and JetStream API errors become ours."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import nats.errors
import nats.js.errors

from core.errors import AppendFailed, ConcurrencyConflict, StoreError, StoreUnavailable
from core.store.acks import ERR_WRONG_LAST_SEQUENCE, ApiError


def from_api_error(error: ApiError, *, subject: str, expected: int | None = None) -> StoreError:
    """Translate an error carried by a publish acknowledgement."""
    if error.err_code == ERR_WRONG_LAST_SEQUENCE and expected is not None:
        return ConcurrencyConflict(subject, expected, error.description)
    return AppendFailed(
        f"the server refused the append on {subject}: {error.description} (code {error.code}/{error.err_code})"
    )


def from_exception(exc: BaseException, *, doing: str) -> StoreError:
    """Translate a nats-py exception raised while `doing` something (e.g. "append on mesh.evt.x")."""
    if isinstance(exc, nats.js.errors.APIError):
        return AppendFailed(f"{doing}: the server answered {exc.description} (code {exc.err_code})")
    if isinstance(exc, (nats.errors.NoRespondersError, nats.js.errors.NoStreamResponseError)):
        return StoreUnavailable(
            f"{doing}: no stream answered; is JetStream enabled and were the streams created "
            "(`mahavishnu up` does both)?"
        )
    if isinstance(exc, (nats.errors.TimeoutError, asyncio.TimeoutError)):
        return AppendFailed(f"{doing}: the server did not answer in time; nothing may be assumed stored, retry")
    if isinstance(exc, (nats.errors.ConnectionClosedError, nats.errors.NoServersError, ConnectionError)):
        return StoreUnavailable(f"{doing}: the connection to the NATS server is gone; check that the mesh is up")
    return StoreError(f"{doing}: {type(exc).__name__}: {exc}")


def from_connect_error(exc: BaseException, url: str, *, cert: Path, ca: Path) -> StoreUnavailable:
    """Translate a failure to open a connection to `url` with certificate `cert`, trusting `ca`."""
    if isinstance(exc, (TimeoutError, nats.errors.NoServersError)):
        return StoreUnavailable(f"cannot reach the NATS server at {url}: is the mesh up (`mahavishnu up`)?")
    if isinstance(exc, ssl.SSLCertVerificationError):
        return StoreUnavailable(
            f"the server at {url} presented a certificate not issued by the CA in {ca}: check the URL and the CA file"
        )
    reason = str(exc) or type(exc).__name__
    if isinstance(exc, nats.errors.AuthorizationError) or "authorization violation" in reason.lower():
        return StoreUnavailable(
            f"the server at {url} refused certificate {cert}: it must be issued by this mesh's CA, "
            "unexpired, known to the server and not revoked"
        )
    return StoreUnavailable(f"cannot connect to {url}: {reason}")
