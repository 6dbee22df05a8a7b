"""The one place where nats-py's exceptions and JetStream API errors become ours.

Every boundary that talks to NATS catches nats-py's errors, `(TimeoutError, nats.errors.Error)`,
and raises what one of these returns, `from exc` so the cause stays in the chain:

    from_exception(exc, doing=...)          StoreError        a request to JetStream, a read, an append
    from_api_error(error, subject=...)      StoreError        an error carried by a publish acknowledgement
    from_connect_error(exc, url, ...)       StoreUnavailable  a connection that could not be opened
    unanswered(exc, asked=..., ...)         NoAnswer          a request to one of our services or to a device

What a nats-py exception says about a request is decided once, by `silence` (pure):

    NoRespondersError, js NoStreamResponseError     NO_RESPONDERS  nobody subscribes to the subject
    TimeoutError (nats-py's, asyncio's, builtin)    TIMEOUT        no answer in time
    ConnectionClosedError, NoServersError,          GONE           our connection cannot carry it
    StaleConnectionError, ConnectionDrainingError,
    ConnectionReconnectingError,
    OutboundBufferLimitError, OSError
    anything else (js APIError: the server answered with an error)  None
"""

from __future__ import annotations

import enum
import ssl
from pathlib import Path
from typing import TYPE_CHECKING

import nats.errors
import nats.js.errors

from core.errors import AppendFailed, ConcurrencyConflict, StoreError, StoreUnavailable
from core.store.acks import ERR_WRONG_LAST_MSG_ID, ERR_WRONG_LAST_SEQUENCE, ApiError

if TYPE_CHECKING:
    from core.micro import NoAnswer


class Silence(enum.Enum):
    """Why a request got no answer."""

    NO_RESPONDERS = "nobody subscribes to the subject"
    TIMEOUT = "no answer in time"
    GONE = "the connection cannot carry it"


_GONE = (
    nats.errors.ConnectionClosedError,
    nats.errors.NoServersError,
    nats.errors.StaleConnectionError,
    nats.errors.ConnectionDrainingError,
    nats.errors.ConnectionReconnectingError,
    nats.errors.OutboundBufferLimitError,
    OSError,  # ConnectionError and the socket's other errors
)


def silence(exc: BaseException) -> Silence | None:
    """Why the request that raised `exc` got no answer (pure); None when it is another error."""
    if isinstance(exc, (nats.errors.NoRespondersError, nats.js.errors.NoStreamResponseError)):
        return Silence.NO_RESPONDERS
    if isinstance(exc, TimeoutError):  # nats-py's TimeoutError is asyncio's, which is the builtin
        return Silence.TIMEOUT
    if isinstance(exc, _GONE):
        return Silence.GONE
    return None


def from_api_error(error: ApiError, *, subject: str, expected: int | None = None) -> StoreError:
    """Translate an error carried by a publish acknowledgement."""
    if error.err_code in (ERR_WRONG_LAST_SEQUENCE, ERR_WRONG_LAST_MSG_ID) and expected is not None:
        return ConcurrencyConflict(subject, expected, error.description)
    return AppendFailed(
        f"the server refused the append on {subject}: {error.description} (code {error.code}/{error.err_code})"
    )


def from_exception(exc: BaseException, *, doing: str, appending: bool = False) -> StoreError:
    """Translate a nats-py exception raised while `doing` something (e.g. "read mesh.evt.>").

    `appending`: the request stored events, so an unanswered or refused one is AppendFailed
    (nothing may be assumed stored); for any other request it is StoreUnavailable or StoreError.
    """
    if isinstance(exc, nats.js.errors.APIError):
        refused = f"{doing}: the server refused: {exc.description} (code {exc.err_code})"
        return AppendFailed(refused) if appending else StoreError(refused)
    match silence(exc):
        case Silence.NO_RESPONDERS:
            return StoreUnavailable(
                f"{doing}: no stream answered; is JetStream enabled and were the streams created "
                "(`mahavishnu up` does both)?"
            )
        case Silence.TIMEOUT if appending:
            return AppendFailed(f"{doing}: the server did not answer in time; nothing may be assumed stored, retry")
        case Silence.TIMEOUT:
            return StoreUnavailable(f"{doing}: the server did not answer in time; check that the mesh is up and retry")
        case Silence.GONE:
            return StoreUnavailable(f"{doing}: the connection to the NATS server is gone; check that the mesh is up")
    return StoreError(f"{doing}: {type(exc).__name__}: {exc}")


def unanswered(exc: BaseException, *, asked: str, timeout: float, nobody: str) -> NoAnswer:
    """Translate a failed request to one of our services or to a device, named by `asked`.

    `nobody` is the message for no responders: who is missing and how to bring it
    (e.g. "no shell broker answers: is `mahavishnu up` running?"). 503 when nobody listens
    or the connection is gone, 504 when no answer came within `timeout` seconds, 500 when the
    request could not be sent (a bug: too large, a bad subject). A NoAnswer
    is a micro ServiceError: raised in a micro handler, micro answers with its code.
    """
    from core.micro import NoAnswer  # with nats micro, which connect() (a device's agent) need not load

    match silence(exc):
        case Silence.NO_RESPONDERS:
            return NoAnswer(503, nobody)
        case Silence.TIMEOUT:
            return NoAnswer(504, f"{asked} did not answer within {timeout:g} s; try again")
        case Silence.GONE:
            return NoAnswer(503, f"{asked} cannot be asked: the connection to the NATS server is gone; try again")
    return NoAnswer(500, f"{asked} cannot be asked: {type(exc).__name__}: {exc}")


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
