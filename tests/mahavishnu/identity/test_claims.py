"""Claims without a mesh (pure): the ids a claim names, its state from its events, its refusals, the rate limit,
and the claim file's shape."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from core.events import ClaimCreated, ClaimRevoked, DeviceProvisioned
from mahavishnu.identity.bucket import TokenBucket
from mahavishnu.identity.claimfile import (
    FORMAT,
    ClaimError,
    ClaimFile,
    check_naming,
    device_id,
    may_name,
    named,
    parse,
    render,
)
from mahavishnu.identity.claims import ClaimState, check, evolve, fold, new_claim_id
from mahavishnu.identity.errors import ProvisioningRefused

NOW = datetime(2027, 3, 1, 9, 0, tzinfo=UTC)
CREATED = ClaimCreated(
    claim_id="claim-0123456789",
    prefix="sensor-",
    count=100,
    uses=2,
    expires_at=NOW + timedelta(days=7),
    serial="5a6b",
    url="tls://127.0.0.1:4222",
    tags={"batch": "b7"},
)


def provisioned(device: str) -> DeviceProvisioned:
    return DeviceProvisioned(claim_id=CREATED.claim_id, device_id=device, serial="1")


def test_a_claim_names_its_prefix_and_padded_indexes() -> None:
    assert [device_id("sensor-", i, 100) for i in (0, 7, 99)] == ["sensor-00", "sensor-07", "sensor-99"]
    assert device_id("d", 0, 1) == "d0" and device_id("d", 10, 11) == "d10"
    assert named("sensor-", 100) == "sensor-00 .. sensor-99" and named("d", 1) == "d0"
    assert may_name("sensor-", 100, "sensor-42")
    for other in ("sensor-100", "sensor-7", "sensor-007", "sensor-4x", "other-42", "sensor-", "sensor-٤٢"):
        assert not may_name("sensor-", 100, other), other
    assert not may_name("sensor-", 50, "sensor-50")


@pytest.mark.parametrize(
    ("prefix", "count", "said"),
    [
        ("Sensor-", 10, "cannot start a device id"),
        ("-sensor", 10, "cannot start a device id"),
        ("a" * 62, 100, "at most 61 characters for 100 devices"),
        ("sensor-", 0, "names 1 to 100000 devices"),
        ("sensor-", 100_001, "names 1 to 100000 devices"),
    ],
)
def test_a_naming_rule_that_makes_no_device_ids_is_refused(prefix: str, count: int, said: str) -> None:
    with pytest.raises(ClaimError, match=said):
        check_naming(prefix, count)


def test_a_claims_state_is_folded_from_its_events_each_applied_once() -> None:
    events = [CREATED, provisioned("sensor-01"), provisioned("sensor-01"), CREATED]  # history and live overlap
    claim = fold(list(events))[CREATED.claim_id]
    assert claim.provisioned == {"sensor-01"} and claim.used == 1
    assert claim.tags == (("batch", "b7"),) and claim.state(NOW) is ClaimState.LIVE
    assert evolve(claim, provisioned("sensor-02")).state(NOW) is ClaimState.USED_UP  # type: ignore[union-attr]
    assert claim.state(CREATED.expires_at) is ClaimState.EXPIRED
    revoked = evolve(claim, ClaimRevoked(claim_id=CREATED.claim_id, serial="5a6b"))
    assert revoked is not None and revoked.state(NOW) is ClaimState.REVOKED
    assert evolve(None, provisioned("sensor-03")) is None  # nothing before its ClaimCreated
    assert fold([provisioned("sensor-03")]) == {}


@pytest.mark.parametrize(
    ("events", "device", "at", "status", "said"),
    [
        ([], "sensor-01", NOW, 404, "is unknown to this mesh"),
        ([ClaimRevoked(claim_id=CREATED.claim_id, serial="5a6b")], "sensor-01", NOW, 410, "was revoked"),
        ([], "sensor-01", NOW + timedelta(days=8), 410, "expired at 2027-03-08 09:00 UTC"),
        ([], "pump-01", NOW, 403, "may not name device 'pump-01': it names sensor-00 .. sensor-99"),
        ([provisioned("sensor-01")], "sensor-01", NOW, 409, "the first device to claim an id keeps it"),
        ([provisioned("sensor-01"), provisioned("sensor-02")], "sensor-03", NOW, 410, "used up (2 of 2 devices)"),
    ],
)
def test_a_claim_refuses_saying_why(events: list[Any], device: str, at: datetime, status: int, said: str) -> None:
    claims = fold([CREATED, *events]) if events or status != 404 else {}
    with pytest.raises(ProvisioningRefused) as refused:
        check(claims.get(CREATED.claim_id), CREATED.claim_id, device, at)
    assert refused.value.status == status and said in refused.value.description


def test_a_live_claim_admits_an_id_it_names() -> None:
    claim = fold([CREATED])[CREATED.claim_id]
    assert check(claim, CREATED.claim_id, "sensor-99", NOW) is claim
    assert new_claim_id().startswith("claim-") and new_claim_id() != new_claim_id()


def test_the_bucket_allows_a_burst_then_its_rate() -> None:
    bucket = TokenBucket(rate=20, burst=40)
    assert sum(bucket.take(100.0) for _ in range(100)) == 40
    assert sum(bucket.take(100.5) for _ in range(100)) == 10  # half a second: 10 more
    assert not bucket.take(100.5)
    assert sum(bucket.take(1000.0) for _ in range(100)) == 40  # never more than the burst


def claim_file() -> ClaimFile:
    pem = "-----BEGIN {0}-----\nAAAA\n-----END {0}-----\n"
    return ClaimFile(
        claim_id="claim-0123456789",
        servers=("tls://mesh:4222",),
        ca_pem=pem.format("CERTIFICATE"),
        cert_pem=pem.format("CERTIFICATE"),
        key_pem=pem.format("PRIVATE KEY"),
        prefix="sensor-",
        count=100,
        expires_at=NOW,
        site="north",
    )


def test_a_claim_file_round_trips() -> None:
    text = render(claim_file())
    assert f'"format": "{FORMAT}"' in text
    assert parse(text, "c.json") == claim_file()


@pytest.mark.parametrize(
    ("change", "said"),
    [
        ({"format": "mahavishnu-claim/9"}, "is not a claim file"),
        ({"claim_id": "dev-a"}, "names no valid claim id"),
        ({"servers": []}, "names no server"),
        ({"key_pem": "AAAA"}, "key_pem is no PEM private key"),
        ({"cert_pem": None}, "has no cert_pem"),
        ({"count": "100"}, "describes no valid claim"),
        ({"expires_at": "soon"}, "describes no valid claim"),
    ],
)
def test_a_malformed_claim_file_is_one_line(change: dict[str, Any], said: str) -> None:
    import json

    document = {**json.loads(render(claim_file())), **change}
    with pytest.raises(ClaimError, match=said) as refused:
        parse(json.dumps(document), "c.json")
    assert "\n" not in str(refused.value)
    with pytest.raises(ClaimError, match="not a claim file"):
        parse("[1, 2]", "c.json")
