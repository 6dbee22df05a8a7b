"""The HTTP door's rules for a token, a client certificate or both (pure: lookups are dictionaries)."""

from __future__ import annotations

import pytest

from projections.authz import Caller, Refusal
from projections.http_auth import NO_CREDENTIALS, Credentials, authenticator

ANN = Caller("ann", "viewer")
BOB = Caller("bob", "admin")
TOKENS = {"t-ann": ANN, "t-bob": BOB}
CERTIFICATES: dict[str, Caller | Refusal] = {
    "pem-ann": ANN,
    "pem-device": Refusal(403, "dev-a presented a device certificate: only operators may query", actor="dev-a"),
}

authenticate = authenticator(
    by_token=TOKENS.get,
    by_certificate=lambda pem: CERTIFICATES.get(pem, Refusal(401, "unknown certificate")),
)


@pytest.mark.parametrize(
    ("credentials", "expected"),
    [
        (Credentials(token="t-ann"), ANN),
        (Credentials(certificate="pem-ann"), ANN),
        (Credentials(token="t-ann", certificate="pem-ann"), ANN),
    ],
)
def test_a_good_credential_names_the_caller(credentials: Credentials, expected: Caller) -> None:
    assert authenticate(credentials) == expected


def test_nothing_sent_names_both_ways_in() -> None:
    assert authenticate(Credentials()) == Refusal(401, NO_CREDENTIALS)
    assert "client certificate" in NO_CREDENTIALS and "Authorization: Bearer" in NO_CREDENTIALS


def test_a_refused_certificate_is_not_rescued_by_a_good_token() -> None:
    refused = authenticate(Credentials(token="t-bob", certificate="pem-device"))
    assert isinstance(refused, Refusal) and (refused.status, refused.actor) == (403, "dev-a")


def test_an_unknown_token_is_refused_even_beside_a_good_certificate() -> None:
    refused = authenticate(Credentials(token="t-guess", certificate="pem-ann"))
    assert isinstance(refused, Refusal) and refused.status == 401 and "token" in refused.reason
    assert "t-guess" not in refused.reason  # a secret never goes into a message


def test_a_certificate_and_a_token_of_different_operators_are_refused() -> None:
    refused = authenticate(Credentials(token="t-bob", certificate="pem-ann"))
    assert isinstance(refused, Refusal) and refused.status == 401 and refused.actor == "ann"


def test_the_method_is_what_was_sent() -> None:
    assert Credentials(token="t").method == "token"
    assert Credentials(certificate="p").method == "certificate"
    assert Credentials(token="t", certificate="p").method == "certificate+token"
