"""NATS JWTs as the callout signs and reads them (pure)."""

from __future__ import annotations

import base64

import nkeys
import pytest

from mahavishnu.identity import natsjwt
from mahavishnu.identity.errors import MalformedToken


def test_a_signed_token_carries_its_claims_and_the_issuers_signature() -> None:
    signer = natsjwt.keypair(natsjwt.new_account_seed())
    token = natsjwt.encode({"sub": "UABC", "nats": {"type": "user"}}, signer, now=1_700_000_000)
    claims = natsjwt.claims_of(token)
    assert claims["sub"] == "UABC" and claims["iat"] == 1_700_000_000
    assert claims["iss"] == signer.public_key.decode() and claims["iss"].startswith("A")  # an account key
    assert claims["jti"]
    header, body, signature = token.split(".")
    raw = base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4))
    assert signer.verify(f"{header}.{body}".encode(), raw)
    with pytest.raises(nkeys.ErrInvalidSignature):
        signer.verify(f"{header}.{body}x".encode(), raw)


@pytest.mark.parametrize("token", ["", "a.b", "not.a.jwt", "e30.e30.sig"])
def test_what_is_not_a_nats_jwt_is_refused(token: str) -> None:
    with pytest.raises(MalformedToken):
        natsjwt.claims_of(token)
