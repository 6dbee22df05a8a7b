"""Who an operator is, as the query service learns it: the resolver follows the CA registry and roles.json."""

from __future__ import annotations

from pathlib import Path

import pytest

from certs import CertificateAuthority, certificate_uri
from core.config import load_config
from mahavishnu.control import operators
from mahavishnu.runtime.home import Home
from mahavishnu.runtime.provisioning import prepare
from projections.authz import Caller


def test_the_resolver_sees_new_operators_role_changes_and_revocations_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(operators, "REREAD_S", 3600.0)  # seen because the files changed, not because time passed
    home = Home(tmp_path / "home")
    settings = load_config(None, env={})
    prepare(home, settings, port=-1, monitor_port=0)
    resolve = operators.resolver(home)
    assert resolve("mahavishnu:cert:1") is None  # nobody yet: the resolver has read the empty registry

    ann = operators.add(home, settings, "ann", "viewer", out_dir=tmp_path / "ann")
    user = certificate_uri(ann.serial)
    assert resolve(user) == Caller("ann", "viewer")

    operators.add(home, settings, "bob", "auditor", out_dir=tmp_path / "bob")
    operators._write_roles(home, {**operators.roles(home), "ann": "admin"})
    assert resolve(user) == Caller("ann", "admin")

    CertificateAuthority.load(home.ca_dir).revoke("ann", reason="key_compromise")
    assert resolve(user) is None


def test_the_devices_by_user_follow_enrolments_and_a_rebuild_of_the_registry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(operators, "REREAD_S", 3600.0)
    home = Home(tmp_path / "home")
    settings = load_config(None, env={})
    prepare(home, settings, port=-1, monitor_port=0)
    ca = CertificateAuthority.load(home.ca_dir)
    devices = operators.devices_by_user(home)
    first = ca.issue_client("dev-1", kind="device", out_dir=tmp_path / "dev-1")
    operators.add(home, settings, "ann", "viewer", out_dir=tmp_path / "ann")  # not a device
    assert devices() == {certificate_uri(first.serial): "dev-1"}
    second = CertificateAuthority.load(home.ca_dir).issue_client("dev-2", kind="device", out_dir=tmp_path / "dev-2")
    assert devices() == {certificate_uri(first.serial): "dev-1", certificate_uri(second.serial): "dev-2"}
    # a revocation builds the registry anew
    CertificateAuthority.load(home.ca_dir).revoke("dev-1", reason="cessation_of_operation")
    third = CertificateAuthority.load(home.ca_dir).issue_client("dev-3", kind="device", out_dir=tmp_path / "dev-3")
    assert devices() == {
        certificate_uri(first.serial): "dev-1",  # revoked, still its device's: a connection of it is named
        certificate_uri(second.serial): "dev-2",
        certificate_uri(third.serial): "dev-3",
    }
