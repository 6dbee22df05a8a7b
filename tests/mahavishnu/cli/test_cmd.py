"""`mahavishnu cmd` against a real `mahavishnu up`: a command reads the same through the CLI, NATS and HTTP."""

from __future__ import annotations

import json
import ssl
from pathlib import Path
from typing import Any

import httpx

from core.commands import NOT_TAKEN
from core.config import load_config
from core.store import connect
from mahavishnu.runtime.home import Home
from tests.mahavishnu.cli_harness import Running, run


async def ask_nats(up: Running, subject: str, body: dict[str, Any]) -> dict[str, Any]:
    """A query to the running mesh's query service, as the control identity."""
    identity = Home(up.home).control_identity(load_config(None, env=up.env))
    nc = await connect(identity, name="tests-cmd", reconnect=False)
    try:
        reply = await nc.request(subject, json.dumps(body).encode(), timeout=10)
    finally:
        await nc.close()
    assert not (reply.headers or {}).get("Nats-Service-Error-Code"), reply.headers
    answer: dict[str, Any] = json.loads(reply.data)
    return answer


def ask_http(up: Running, path: str) -> dict[str, Any]:
    """A GET on the running mesh's HTTP API, as an operator with a viewer's token."""
    if run("operator", "token", "vera", env=up.env).returncode != 0:
        assert run("operator", "add", "vera", "--role", "viewer", env=up.env).returncode == 0
    token = run("operator", "token", "vera", env=up.env).stdout.strip()
    api = f"https://127.0.0.1:{up.env['MAHAVISHNU_HTTP__PORT']}"
    trust = ssl.create_default_context(cafile=up.home / "ca" / "ca.pem")
    answer = httpx.get(f"{api}{path}", headers={"Authorization": f"Bearer {token}"}, verify=trust, timeout=10)
    assert answer.status_code == 200, answer.text
    document: dict[str, Any] = answer.json()
    return document


async def test_a_command_its_offline_device_never_took_reads_expired_through_the_cli_nats_and_http(
    up: Running, tmp_path: Path
) -> None:
    enrolled = run("device", "enroll", "dev-off", "--out", str(tmp_path / "dev-off"), env=up.env)
    assert enrolled.returncode == 0, enrolled.stderr  # enrolled, and its agent never runs

    # --wait gives up at its deadline, ttl + timeout + 5 s after sending: past the time to live by construction.
    waited = run("cmd", "send", "dev-off", "ping", "--ttl", "1s", "--timeout", "1s", "--wait", env=up.env, timeout=90)
    assert waited.returncode == 1, waited.stderr
    outcome = json.loads(waited.stdout)
    command_id = outcome["command_id"]
    assert (outcome["state"], outcome["detail"]) == ("expired", NOT_TAKEN)

    status = run("cmd", "status", command_id, env=up.env)
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["state"] == "expired"
    by_nats = await ask_nats(up, "mesh.q.commands.get", {"id": command_id})
    assert (by_nats["state"], by_nats["detail"]) == ("expired", NOT_TAKEN)
    by_http = ask_http(up, f"/api/commands/{command_id}")
    assert (by_http["state"], by_http["detail"]) == ("expired", NOT_TAKEN)
    listed = ask_http(up, "/api/commands?device=dev-off")
    assert [(c["command_id"], c["state"]) for c in listed["commands"]] == [(command_id, "expired")]


def test_a_command_just_sent_is_found_at_once(up: Running) -> None:
    sent = run("cmd", "send", "dev-later", "ping", "--ttl", "1h", env=up.env)
    assert sent.returncode == 0, sent.stderr
    command_id = sent.stdout.strip()
    # No waiting here: `cmd status` waits until the read model has applied what is stored.
    status = run("cmd", "status", command_id, env=up.env)
    assert status.returncode == 0, status.stderr
    found = json.loads(status.stdout)
    assert (found["command_id"], found["device"], found["name"], found["state"]) == (
        command_id,
        "dev-later",
        "ping",
        "issued",
    )
