"""Fixtures of the certs tests: a fresh CA per test, for each key algorithm where it matters."""

from __future__ import annotations

from pathlib import Path

import pytest

from certs import CertificateAuthority, KeyAlgorithm


@pytest.fixture(params=["ecdsa-p256", "ed25519"])
def algorithm(request: pytest.FixtureRequest) -> KeyAlgorithm:
    value: KeyAlgorithm = request.param
    return value


@pytest.fixture
def ca(tmp_path: Path, algorithm: KeyAlgorithm) -> CertificateAuthority:
    return CertificateAuthority.init(tmp_path / "ca", algorithm=algorithm)
