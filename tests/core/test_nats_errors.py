"""nats-py's exceptions become ours in one place (pure): what each means, and which error of ours says so."""

from __future__ import annotations

import nats.errors
import nats.js.errors
import pytest
from nats.micro.request import ServiceError

from core.errors import AppendFailed, MahavishnuError, NoAnswer, StoreError, StoreUnavailable
from core.store.nats_errors import Silence, from_exception, silence, unanswered


@pytest.mark.parametrize(
    ("exc", "meaning"),
    [
        (nats.errors.NoRespondersError(), Silence.NO_RESPONDERS),
        (nats.js.errors.NoStreamResponseError(), Silence.NO_RESPONDERS),
        (nats.errors.TimeoutError(), Silence.TIMEOUT),
        (nats.js.errors.FetchTimeoutError(), Silence.TIMEOUT),
        (TimeoutError(), Silence.TIMEOUT),
        (nats.errors.ConnectionClosedError(), Silence.GONE),
        (nats.errors.NoServersError(), Silence.GONE),
        (nats.errors.UnexpectedEOF(), Silence.GONE),
        (nats.errors.ConnectionReconnectingError(), Silence.GONE),
        (ConnectionResetError(), Silence.GONE),
        (nats.js.errors.NotFoundError(code=404, description="stream not found", err_code=10059), None),
        (nats.errors.BadSubjectError(), None),
    ],
)
def test_each_nats_error_means_one_thing(exc: BaseException, meaning: Silence | None) -> None:
    assert silence(exc) is meaning


def test_an_unanswered_append_may_have_been_stored_and_says_so() -> None:
    error = from_exception(nats.errors.TimeoutError(), doing="append on mesh.evt.x", appending=True)
    assert isinstance(error, AppendFailed)
    assert str(error) == "append on mesh.evt.x: the server did not answer in time; nothing may be assumed stored, retry"


def test_an_unanswered_read_is_the_store_being_unavailable() -> None:
    error = from_exception(nats.errors.TimeoutError(), doing="read mesh.evt.>")
    assert isinstance(error, StoreUnavailable)
    assert "check that the mesh is up" in str(error)


def test_no_responders_and_a_closed_connection_are_the_store_being_unavailable() -> None:
    nobody = from_exception(nats.errors.NoRespondersError(), doing="JetStream API $JS.API.INFO")
    gone = from_exception(nats.errors.ConnectionClosedError(), doing="read mesh.evt.>", appending=True)
    assert isinstance(nobody, StoreUnavailable) and "`mahavishnu up`" in str(nobody)
    assert isinstance(gone, StoreUnavailable) and "connection to the NATS server is gone" in str(gone)


def test_a_refusal_by_the_jetstream_api_names_the_server_reason() -> None:
    refused = nats.js.errors.NotFoundError(code=404, description="stream not found", err_code=10059)
    read = from_exception(refused, doing="read the state of stream CODE")
    assert type(read) is StoreError
    assert str(read) == "read the state of stream CODE: the server refused: stream not found (code 10059)"
    assert isinstance(from_exception(refused, doing="append on mesh.evt.x", appending=True), AppendFailed)


def test_an_unexpected_nats_error_is_still_a_store_error_naming_it() -> None:
    error = from_exception(nats.errors.BadSubjectError(), doing="read mesh..x")
    assert type(error) is StoreError and "BadSubjectError" in str(error)


def test_a_service_nobody_answers_is_503_with_the_callers_hint() -> None:
    error = unanswered(
        nats.errors.NoRespondersError(),
        asked="the shell broker",
        timeout=5,
        nobody="no shell broker answers: is `mahavishnu up` running?",
    )
    assert (error.status, error.code) == (503, "503")
    assert str(error) == "no shell broker answers: is `mahavishnu up` running?"
    assert isinstance(error, ServiceError) and isinstance(error, MahavishnuError)
    assert error.description == str(error)


def test_a_service_too_slow_to_answer_is_504_and_one_whose_connection_is_gone_503() -> None:
    slow = unanswered(nats.errors.TimeoutError(), asked="device dev-1", timeout=2.5, nobody="")
    gone = unanswered(nats.errors.ConnectionClosedError(), asked="device dev-1", timeout=2.5, nobody="")
    assert (slow.code, str(slow)) == ("504", "device dev-1 did not answer within 2.5 s; try again")
    assert gone.code == "503" and "connection to the NATS server is gone" in str(gone)
    assert isinstance(slow, NoAnswer)
