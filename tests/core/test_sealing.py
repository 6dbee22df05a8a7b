"""Sealing personal fields with per-subject data keys: round trips, bindings, and what a lost key leaves."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec
import pytest

from core.events import DeviceEnrolled, decode, encode
from core.sealing import DataKey, SealingError, device_subject, new_data_key, reveal, seal, unseal

OWNER = "Ada Lovelace"


def test_a_sealed_field_opens_with_its_key_only() -> None:
    key = new_data_key()
    sealed = seal(key, OWNER, subject=device_subject("dev-a"), field="owner")
    assert OWNER.encode() not in sealed.ciphertext
    assert unseal(key, sealed, subject=device_subject("dev-a"), field="owner") == OWNER
    with pytest.raises(SealingError, match="was sealed with key"):
        unseal(new_data_key(), sealed, subject=device_subject("dev-a"), field="owner")


@pytest.mark.parametrize(
    ("subject", "field"), [(device_subject("dev-b"), "owner"), (device_subject("dev-a"), "location")]
)
def test_a_sealed_field_moved_to_another_device_or_field_does_not_open(subject: str, field: str) -> None:
    key = new_data_key()
    sealed = seal(key, OWNER, subject=device_subject("dev-a"), field="owner")
    with pytest.raises(SealingError, match="does not authenticate"):
        unseal(key, sealed, subject=subject, field=field)


def test_a_changed_ciphertext_does_not_open() -> None:
    key = new_data_key()
    sealed = seal(key, OWNER, subject=device_subject("dev-a"), field="owner")
    flipped = msgspec.structs.replace(sealed, ciphertext=bytes([sealed.ciphertext[0] ^ 1]) + sealed.ciphertext[1:])
    with pytest.raises(SealingError, match="does not authenticate"):
        unseal(key, flipped, subject=device_subject("dev-a"), field="owner")


def test_reveal_gives_nothing_once_the_key_is_gone_or_replaced() -> None:
    key = new_data_key()
    sealed = seal(key, OWNER, subject=device_subject("dev-a"), field="owner")
    assert reveal(key, sealed, subject=device_subject("dev-a"), field="owner") == OWNER
    assert reveal(None, sealed, subject=device_subject("dev-a"), field="owner") is None  # erased
    assert reveal(new_data_key(), sealed, subject=device_subject("dev-a"), field="owner") is None  # replaced
    assert reveal(key, sealed, subject=device_subject("dev-b"), field="owner") is None  # moved
    assert reveal(key, None, subject=device_subject("dev-a"), field="owner") is None


def test_the_event_on_the_wire_carries_no_plaintext_and_decodes_back() -> None:
    key = new_data_key()
    event = DeviceEnrolled(
        device_id="dev-a",
        serial="1f",
        fingerprint_sha256="ab" * 32,
        not_after=datetime(2030, 1, 1, tzinfo=UTC),
        owner=seal(key, OWNER, subject=device_subject("dev-a"), field="owner"),
    )
    wire = encode(event)
    assert b"Ada" not in wire and key.to_text().split()[1].encode() not in wire
    assert decode(wire) == event


def test_a_key_never_shows_its_secret_and_parses_back() -> None:
    key = new_data_key()
    secret = key.to_text().split()[1]
    assert secret not in repr(key) and secret not in str(key)
    assert DataKey.from_text(key.to_text(), where="test").to_text() == key.to_text()
    with pytest.raises(SealingError) as caught:
        DataKey.from_text("0123456789abcdef " + secret[:-2], where="keys/devices/dev-a.key")
    assert "keys/devices/dev-a.key is malformed" in str(caught.value) and secret[:-2] not in str(caught.value)
