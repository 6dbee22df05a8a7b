"""The one place where nats-py's exceptions and JetStream API errors become ours."""

from __future__ import annotations

import asyncio

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
