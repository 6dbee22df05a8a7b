"""A handler's refusals are answered the way nats micro answers them, from a task micro does not await."""

from __future__ import annotations

import logging

import pytest
from nats.micro.request import Request, ServiceError

from core.errors import ServiceRefusal
from core.micro import answer_as_micro

LOG = logging.getLogger("tests.micro")


class Answered:
    """What a request was answered with: micro's error code and description, or nothing."""

    def __init__(self, *, fails: bool = False) -> None:
        self.errors: list[tuple[str, str]] = []
        self.fails = fails

    async def respond_error(self, code: str, description: str) -> None:
        if self.fails:
            raise ConnectionResetError("the connection went away")
        self.errors.append((code, description))


async def answer(handler_raises: BaseException | None, request: Answered) -> None:
    async def handler(_: Request) -> None:
        if handler_raises is not None:
            raise handler_raises

    await answer_as_micro(handler, request, endpoint="things.get", log=LOG)  # type: ignore[arg-type]


async def test_a_refusal_is_answered_with_its_code_and_description() -> None:
    request = Answered()
    await answer(ServiceRefusal(404, "no thing 'x'"), request)
    assert request.errors == [("404", "no thing 'x'")]


async def test_any_service_error_is_answered_as_micro_would() -> None:
    request = Answered()
    await answer(ServiceError("409", "taken"), request)
    assert request.errors == [("409", "taken")]


async def test_a_bug_is_answered_500_without_its_details_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    request = Answered()
    await answer(KeyError("a secret detail"), request)
    assert request.errors == [("500", "internal error in things.get: KeyError")]
    assert "a secret detail" in caplog.text  # the log has the cause


async def test_an_answer_that_cannot_be_sent_is_logged_never_raised(caplog: pytest.LogCaptureFixture) -> None:
    await answer(ServiceRefusal(404, "no thing"), Answered(fails=True))
    assert "request failed" in caplog.text


async def test_an_answered_request_is_left_alone() -> None:
    request = Answered()
    await answer(None, request)
    assert request.errors == []
