"""Whom the auth callout admits (pure): live NATS devices with their own permissions, nobody else."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from certs import CertificateAuthority, IssuedCertificate
from mahavishnu.control.permissions import device_user, site_user
from mahavishnu.gateways.mqtt import devices as mqtt
from mahavishnu.identity.claims import claim_user
from mahavishnu.identity.decision import (
    ACCOUNT,
    Fleet,
    Grant,
    Refusal,
    Request,
    decide,
    parse_request,
    refusal_audit,
    response_claims,
    user_claims,
)
from mahavishnu.identity.errors import BadRequest

NOBODY = Fleet(revoked=frozenset(), mqtt_devices=frozenset())


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> CertificateAuthority:
    return CertificateAuthority.init(tmp_path_factory.mktemp("ca") / "ca")


def issue(ca: CertificateAuthority, tmp: Path, identity: str, kind: str = "device") -> IssuedCertificate:
    if kind == "site":
        return ca.issue_site(identity, hosts=["localhost"], out_dir=tmp / identity)
    return ca.issue_client(identity, kind=kind, out_dir=tmp / identity)


def request(issued: IssuedCertificate | None, client_type: str = "nats", mqtt_client_id: str = "") -> Request:
    return Request(
        server_id="NSERVER",
        user_nkey="UCONN",
        client_type=client_type,
        client_id=7,
        name="agent",
        certificate=issued.cert_path.read_bytes() if issued else None,
        mqtt_client_id=mqtt_client_id,
    )


def test_a_live_device_gets_its_own_permissions_until_its_certificate_ends(
    ca: CertificateAuthority, tmp_path: Path
) -> None:
    issued = issue(ca, tmp_path, "dev-a")
    granted = decide(request(issued), NOBODY)
    assert isinstance(granted, Grant)
    assert granted.identity == "dev-a" and granted.kind == "device" and granted.serial == issued.serial
    assert granted.user == device_user("dev-a", issued.serial)
    assert abs(granted.expires - issued.not_after) < timedelta(seconds=1)
    claims = user_claims(granted, "UCONN")
    assert claims["sub"] == "UCONN" and claims["aud"] == ACCOUNT
    assert claims["name"] == f"mahavishnu:cert:{issued.serial:x}"
    assert claims["nats"]["pub"]["allow"] == list(granted.user.publish_allow or ())
    assert claims["nats"]["sub"]["allow"] == list(granted.user.subscribe_allow or ())
    assert claims["nats"]["resp"] == {"max": 1, "ttl": 0}
    assert claims["nats"]["allowed_connection_types"] == ["STANDARD"]
    assert claims["exp"] == int(granted.expires.timestamp())


@pytest.mark.parametrize(
    ("why", "fleet", "kind", "client_type", "reason"),
    [
        ("revoked", "revoked", "device", "nats", "is revoked"),
        ("an MQTT device", "mqtt", "device", "nats", "MQTT device"),
        ("an MQTT device under another's client id", "mqtt", "device", "mqtt", "as client id 'other'"),
        ("over MQTT", "none", "device", "mqtt", "may not connect over mqtt"),
        ("an operator the configuration does not list", "none", "operator", "nats", "not a user of this server"),
        ("a site as a client", "none", "site", "nats", "may only link its leaf server"),
        ("a control identity the configuration does not list", "none", "control", "nats", "not a user"),
    ],
)
def test_refused(
    ca: CertificateAuthority, tmp_path: Path, why: str, fleet: str, kind: str, client_type: str, reason: str
) -> None:
    identity = f"who-{uuid.uuid4().hex[:8]}"
    issued = issue(ca, tmp_path, identity, kind)
    known = {
        "none": NOBODY,
        "revoked": Fleet(revoked=frozenset({issued.serial}), mqtt_devices=frozenset()),
        "mqtt": Fleet(revoked=frozenset(), mqtt_devices=frozenset({identity})),
    }[fleet]
    refused = decide(request(issued, client_type, mqtt_client_id="other" if client_type == "mqtt" else ""), known)
    assert isinstance(refused, Refusal), why
    assert reason in refused.reason
    assert refused.who == f"{kind}:{identity}"


@pytest.mark.parametrize("client_id", ["meter", "meter/pub"])
def test_an_mqtt_device_gets_its_topics_in_the_mqtt_account_under_its_own_client_id(
    ca: CertificateAuthority, tmp_path: Path, client_id: str
) -> None:
    identity = f"meter-{uuid.uuid4().hex[:8]}"
    issued = issue(ca, tmp_path, identity)
    fleet = Fleet(revoked=frozenset(), mqtt_devices=frozenset({identity}))
    own_id = client_id.replace("meter", identity)
    granted = decide(request(issued, "mqtt", mqtt_client_id=own_id), fleet)
    assert isinstance(granted, Grant) and granted.account == mqtt.MQTT_ACCOUNT
    assert granted.user == mqtt.device_user(identity, issued.serial)
    claims = user_claims(granted, "UCONN")
    assert claims["aud"] == "MQTT" and claims["nats"]["allowed_connection_types"] == ["MQTT"]
    assert claims["nats"]["sub"]["allow"] == [f"mesh.cmd.{identity}", f"mesh.cmd.{identity}.>"]


def test_a_refusal_is_audited_with_who_why_and_the_client_id_it_tried(ca: CertificateAuthority, tmp_path: Path) -> None:
    identity = f"meter-{uuid.uuid4().hex[:8]}"
    issued = issue(ca, tmp_path, identity)
    tried = request(issued, "mqtt", mqtt_client_id="meter-2" + "x" * 500)
    refused = decide(tried, Fleet(revoked=frozenset(), mqtt_devices=frozenset({identity})))
    assert isinstance(refused, Refusal)
    record = refusal_audit(tried, refused)
    assert (record["actor"], record["target"], record["action"]) == (identity, identity, "connection.refused")
    assert record["outcome"] == "denied" and record["details"]["over"] == "mqtt"
    assert record["details"]["client_id"] == ("meter-2" + "x" * 500)[:128]
    assert record["details"]["who"] == f"device:{identity}" and "as client id" in record["details"]["reason"]


def test_a_sites_leaf_link_gets_the_sites_permissions(ca: CertificateAuthority, tmp_path: Path) -> None:
    name = f"site-{uuid.uuid4().hex[:6]}"
    issued = issue(ca, tmp_path, name, "site")
    link = Request("NSERVER", "UCONN", "", 3, "leaf", issued.cert_path.read_bytes(), kind="Leafnode")
    granted = decide(link, NOBODY)
    assert isinstance(granted, Grant) and granted.kind == "site"
    user = site_user(issued.serial, name)
    assert granted.user == user
    claims = user_claims(granted, "UCONN")["nats"]
    assert claims["allowed_connection_types"] == ["LEAFNODE"]
    assert "allow" not in claims["pub"] and claims["pub"]["deny"] == list(user.publish_deny)
    assert claims["sub"]["deny"] == list(user.subscribe_deny)
    assert claims["sub"]["allow"] == list(user.subscribe_allow or ())  # the hub's deliveries to this site only
    assert f"mesh.site.{name}.>" in claims["sub"]["allow"]


def test_a_device_over_a_leaf_link_is_refused(ca: CertificateAuthority, tmp_path: Path) -> None:
    issued = issue(ca, tmp_path, f"dev-{uuid.uuid4().hex[:6]}")
    link = Request("NSERVER", "UCONN", "", 3, "leaf", issued.cert_path.read_bytes(), kind="Leafnode")
    refused = decide(link, NOBODY)
    assert isinstance(refused, Refusal) and "may not connect over leafnode" in refused.reason


def test_an_expired_certificate_is_refused(ca: CertificateAuthority, tmp_path: Path) -> None:
    issued = issue(ca, tmp_path, "dev-old")
    refused = decide(request(issued), NOBODY, now=datetime.now(UTC) + timedelta(days=400))
    assert isinstance(refused, Refusal) and "expired" in refused.reason


def test_no_certificate_or_an_unreadable_one_is_refused(ca: CertificateAuthority, tmp_path: Path) -> None:
    assert isinstance(decide(request(None), NOBODY), Refusal)
    garbled = Request(
        "NSERVER", "UCONN", "nats", 1, "x", b"-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n"
    )
    refused = decide(garbled, NOBODY)
    assert isinstance(refused, Refusal) and "cannot be read" in refused.reason


def test_a_request_is_read_from_the_servers_claims(ca: CertificateAuthority, tmp_path: Path) -> None:
    issued = issue(ca, tmp_path, "dev-req")
    pem = issued.cert_path.read_text()
    claims = {
        "nats": {
            "type": "authorization_request",
            "server_id": {"id": "NSERVER", "name": "mesh"},
            "user_nkey": "UCONN",
            "client_info": {"id": 12, "type": "nats", "name": "agent"},
            "client_tls": {"verified_chains": [[pem, ca.cert_path.read_text()]]},
        }
    }
    parsed = parse_request(claims)
    assert parsed == Request("NSERVER", "UCONN", "nats", 12, "agent", pem.encode(), kind="Client")
    claims["nats"]["client_info"] = {"id": 13, "type": "mqtt", "mqtt_id": "meter-1"}  # the server's ClientInformation
    assert parse_request(claims).mqtt_client_id == "meter-1"
    with pytest.raises(BadRequest):
        parse_request({"nats": {"type": "authorization_response"}})
    with pytest.raises(BadRequest):
        parse_request({"nats": {"type": "authorization_request", "server_id": {}}})


def test_a_response_names_the_servers_user_key_and_the_server() -> None:
    asked = Request("NSERVER", "UCONN", "nats", 1, "x", None)
    assert response_claims(asked, user_jwt="JWT") == {
        "sub": "UCONN",
        "aud": "NSERVER",
        "nats": {"type": "authorization_response", "version": 2, "jwt": "JWT"},
    }
    assert response_claims(asked, error="no")["nats"]["error"] == "no"


def test_a_device_may_publish_exactly_the_events_it_reports() -> None:
    from core.events import (
        CommandSucceeded,
        DeviceHeartbeat,
        DeviceRevoked,
        DeviceTagged,
        ReportedState,
        TelemetryReported,
    )

    allowed = set(device_user("dev-a", 1).publish_allow or ())
    reported = [
        TelemetryReported(device_id="dev-a", metrics={}),
        DeviceHeartbeat(device_id="dev-a", uptime_s=1.0),
        ReportedState(device_id="dev-a", state={}),
        CommandSucceeded(device_id="dev-a", command_id="c-1"),
    ]
    assert {event.subject() for event in reported} <= allowed
    assert DeviceRevoked(device_id="dev-a", serials=[]).subject() not in allowed
    assert DeviceTagged(device_id="dev-a", tags={}).subject() not in allowed


def test_a_claims_bootstrap_certificate_may_only_ask_for_a_device_certificate(
    ca: CertificateAuthority, tmp_path: Path
) -> None:
    claim_id = f"claim-{uuid.uuid4().hex[:10]}"
    issued = issue(ca, tmp_path, claim_id, "claim")
    granted = decide(request(issued), NOBODY)
    assert isinstance(granted, Grant) and (granted.kind, granted.identity) == ("claim", claim_id)
    assert granted.user == claim_user(claim_id, issued.serial)
    claims = user_claims(granted, "UCONN")["nats"]
    assert claims["pub"] == {"allow": [f"mesh.provision.{claim_id}"]}
    assert claims["sub"] == {"allow": [f"_INBOX_{claim_id}.>"]}
    assert "resp" not in claims  # it answers nobody

    revoked = decide(request(issued), Fleet(revoked=frozenset({issued.serial}), mqtt_devices=frozenset()))
    assert isinstance(revoked, Refusal) and f"claim:{claim_id} is revoked" in revoked.reason
    expired = decide(request(issued), NOBODY, now=datetime.now(UTC) + timedelta(days=400))
    assert isinstance(expired, Refusal) and "has expired" in expired.reason
    over_mqtt = decide(request(issued, "mqtt"), NOBODY)
    assert isinstance(over_mqtt, Refusal) and "a claim's bootstrap certificate: it may not connect over mqtt" in (
        over_mqtt.reason
    )
