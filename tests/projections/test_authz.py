"""Who a query's caller is, from the Nats-Request-Info header (pure; test_authorization.py runs it on a real server)."""

from __future__ import annotations

import json

import pytest

from projections.authz import CONTROL, Caller, caller_of
from tests.core.requester_samples import CAPTURED, captured

USER = json.loads(CAPTURED)["user"]
ANN = Caller("ann", "viewer")


def resolve(user: str) -> Caller | None:
    return ANN if user == USER else None


def test_the_header_names_the_user_the_caller_is_resolved_from() -> None:
    assert caller_of(CAPTURED, resolve) == ANN


def test_no_header_is_the_control_services_inside_the_account() -> None:
    assert caller_of(None, resolve) is CONTROL


@pytest.mark.parametrize(
    "header",
    [
        "",
        "not json",
        captured(user="mahavishnu:cert:someone-else"),
        captured(user=""),
        captured(user=None),
        captured(id=None),  # a user, but not the server's description of a connection
    ],
)
def test_a_bad_header_or_an_unknown_user_is_nobody(header: str) -> None:
    assert caller_of(header, resolve) is None
