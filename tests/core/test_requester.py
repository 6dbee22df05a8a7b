"""The requester of a request that crossed an import: Nats-Request-Info as the server writes it, parsed once."""

from __future__ import annotations

import asyncio

import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg

from core.requester import (
    HEADER,
    BadRequestInfo,
    NoRequestInfo,
    Requester,
    RequestInfoError,
    parse_request_info,
    requester_of,
)
from tests.core.requester_samples import CAPTURED, captured
from tests.harness import Mesh
from tests.mahavishnu.shell_harness import add_operator, operator_connection


def test_the_servers_header_names_the_user_and_the_connection() -> None:
    assert parse_request_info(CAPTURED) == Requester(
        server="mahavishnu",
        account="OPS",
        cid=9,
        start="2026-12-06T21:55:37.932741802Z",
        user="mahavishnu:cert:6cba153bf7d8f5d94f37c7df44fcc9c2576d6d27",
        name="cap-op-other",
    )
    assert parse_request_info(CAPTURED.encode()) == parse_request_info(CAPTURED)
    assert requester_of({HEADER: CAPTURED, "Other": "x"}) == parse_request_info(CAPTURED)


def test_a_connection_without_a_user_name_has_an_empty_user() -> None:
    requester = parse_request_info(captured(user=None, name=None))
    assert (requester.user, requester.name, requester.cid) == ("", "", 9)


@pytest.mark.parametrize("headers", [None, {}, {"Other": "x"}])
def test_no_header_is_its_own_error(headers: dict[str, str] | None) -> None:
    with pytest.raises(NoRequestInfo) as missing:
        requester_of(headers)
    assert "did not come through an account's import" in str(missing.value)


@pytest.mark.parametrize(
    "header",
    [
        "",  # there but empty: not the same as no header
        "not json",
        "[]",
        captured(id="9"),  # a client id is a number
        captured(user=7),
        captured(acc=None),
        captured(server=None),
    ],
)
def test_a_header_that_is_not_the_servers_is_refused_clearly(header: str) -> None:
    with pytest.raises(BadRequestInfo) as bad:
        parse_request_info(header)
    assert str(bad.value).startswith(f"the {HEADER} header does not name a connection as the server does: ")
    assert isinstance(bad.value, RequestInfoError)


async def test_a_real_server_names_an_operators_connection_and_nothing_inside_the_account(
    mesh: Mesh, nc: Client
) -> None:
    heard: asyncio.Queue[Msg] = asyncio.Queue()

    async def answer(msg: Msg) -> None:
        await heard.put(msg)
        await msg.respond(b"")

    subscription = await nc.subscribe("mesh.shell.open", cb=answer)  # imported by OPS with share: true
    try:
        add_operator(mesh, "requester-probe", "operator")
        operator = await operator_connection(mesh, "requester-probe")
        try:
            await operator.request("mesh.shell.open", b"{}", timeout=5)
            crossed = await asyncio.wait_for(heard.get(), 5)
        finally:
            await operator.close()
        await nc.request("mesh.shell.open", b"{}", timeout=5)  # from inside MESH: no import crossed
        inside = await asyncio.wait_for(heard.get(), 5)
    finally:
        await subscription.unsubscribe()

    requester = requester_of(crossed.headers)
    assert (requester.account, requester.name) == ("OPS", "requester-probe-other")
    assert requester.user.startswith("mahavishnu:cert:")
    assert requester.server and requester.cid > 0 and requester.start
    with pytest.raises(NoRequestInfo):
        requester_of(inside.headers)
