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
