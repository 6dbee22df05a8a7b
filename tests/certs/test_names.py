"""The pure validation rules of `certs.names`."""

from __future__ import annotations

import ipaddress
import string

import pytest
from cryptography import x509
from hypothesis import given
from hypothesis import strategies as st

from certs import CertError, InvalidIdError, validate_identity
from certs.names import parse_hosts, parse_reason, validate_days, validate_kind

ALLOWED = set(string.ascii_lowercase + string.digits + "-")


@pytest.mark.parametrize("identity", ["a", "0", "dev-1", "sensor-0042", "a" * 63, "x-"])
def test_valid_identities_are_returned_unchanged(identity: str) -> None:
    assert validate_identity(identity) == identity


@pytest.mark.parametrize(
    "identity", ["", "-dev", "Dev", "dev_1", "dev.1", "dev 1", "a" * 64, "dev-1\n", "../etc", "dév", "dev/1"]
)
def test_invalid_identities_are_refused_with_the_rule(identity: str) -> None:
    with pytest.raises(InvalidIdError) as info:
        validate_identity(identity)
    assert "^[a-z0-9][a-z0-9-]{0,62}$" in str(info.value)


@given(st.text(alphabet=string.ascii_letters + string.digits + "-_. /\n", max_size=70))
def test_validate_identity_accepts_exactly_the_rule(text: str) -> None:
    expected = 1 <= len(text) <= 63 and set(text) <= ALLOWED and not text.startswith("-")
    try:
        validate_identity(text)
        accepted = True
    except InvalidIdError:
        accepted = False
    assert accepted == expected


def test_hosts_become_dns_and_ip_entries_in_order_without_duplicates() -> None:
    entries = parse_hosts(["nats.mesh.local", "127.0.0.1", "::1", "*.mesh.local", "NATS.mesh.local"])
    assert entries == [
        x509.DNSName("nats.mesh.local"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.IPAddress(ipaddress.ip_address("::1")),
        x509.DNSName("*.mesh.local"),
    ]


@pytest.mark.parametrize("hosts", [[], ["bad host"], ["-x.local"], ["a..b"], ["x" * 64 + ".local"], "localhost"])
def test_bad_hosts_are_refused(hosts: list[str]) -> None:
    with pytest.raises(InvalidIdError):
        parse_hosts(hosts)


def test_reasons_accept_python_and_rfc_names() -> None:
    assert parse_reason("key_compromise") is x509.ReasonFlags.key_compromise
    assert parse_reason("keyCompromise") is x509.ReasonFlags.key_compromise
    with pytest.raises(InvalidIdError, match="superseded"):
        parse_reason("because")


def test_kind_and_days_are_checked() -> None:
    assert validate_kind("operator") == "operator"
    with pytest.raises(InvalidIdError, match="device, control, operator"):
        validate_kind("server")
    with pytest.raises(InvalidIdError):
        validate_kind("admin")
    assert validate_days(1) == 1
    for bad in (0, -3, True):
        with pytest.raises(CertError, match="whole number of days"):
            validate_days(bad)
