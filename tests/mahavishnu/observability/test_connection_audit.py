"""The server's connection events become audit events, with the certificate's identity as the actor."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from certs import CertificateAuthority
from core.errors import StoreUnavailable
from core.events import AuditRecorded
from core.store import EventStore, Identity, connect
from mahavishnu.control import devices, operators
from mahavishnu.observability import connection_audit
from tests.harness import Mesh
from tests.waiting import eventually_async


def test_a_refused_connection_becomes_a_denied_entry() -> None:
    payload = b'{"client": {"acc": "MESH", "user": "mahavishnu:cert:ab", "host": "10.0.0.9"}, "reason": "Auth Failure"}'
    entry = connection_audit.audit_entry("$SYS.SERVER.X.CLIENT.AUTH.ERR", payload, lambda user: "dev-q")
    assert entry == {
        "actor": "dev-q",
        "category": "connection",
        "action": "connection.refused",
        "target": "MESH",
        "outcome": "denied",
        "details": {"account": "MESH", "host": "10.0.0.9", "reason": "Auth Failure", "user": "mahavishnu:cert:ab"},
    }
    assert connection_audit.audit_entry("$SYS.ACCOUNT.MESH.CONNECT", b"not json", str) is None


async def test_connections_and_refusals_are_audited(mesh: Mesh, store: EventStore, tmp_path: Path) -> None:
    system = await connect(mesh.home.system_identity(mesh.settings, mesh.port), name="system", reconnect=False)
    subscriptions = await connection_audit.follow(system, store.audit, operators.identifier(mesh.home))
    try:
        device = f"dev-{uuid.uuid4().hex[:8]}"
        await devices.enroll(mesh.home, mesh.settings, store, device, out_dir=tmp_path / device, url=mesh.identity.url)
        folder = tmp_path / device
        client = await connect(
            Identity(mesh.identity.url, folder / "ca.pem", folder / "cert.pem", folder / "key.pem"),
            name=device,
            reconnect=False,
            inbox_prefix=f"_INBOX_{device}",
        )
        await client.close()

        stranger = CertificateAuthority.load(mesh.home.ca_dir).issue_client(
            f"nobody-{uuid.uuid4().hex[:6]}", kind="operator", out_dir=tmp_path / "stranger"
        )  # an operator's certificate never added: neither the configuration nor the identity service admits it
        assert stranger.key_path is not None
        with pytest.raises(StoreUnavailable):
            await connect(
                Identity(mesh.identity.url, stranger.ca_path, stranger.cert_path, stranger.key_path),
                name="stranger",
                reconnect=False,
                connect_timeout=3,
            )

        async def audited() -> bool:
            entries = [s.event async for s in store.read("mesh.audit.connection.>")]
            seen = {(e.actor, e.action) for e in entries if isinstance(e, AuditRecorded)}
            return {(device, "connection.open"), (device, "connection.close")} <= seen and any(
                action == "connection.refused" for _, action in seen
            )

        await eventually_async(audited, timeout=20, what="the connection audit entries")
    finally:
        for subscription in subscriptions:
            await subscription.unsubscribe()
        await system.close()
