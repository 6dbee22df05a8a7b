"""`mahavishnu cmd` against a real `mahavishnu up`: a command reads the same through the CLI, NATS and HTTP."""

from __future__ import annotations

import asyncio
import json
import signal
import ssl
import subprocess
from pathlib import Path
from typing import Any

import httpx

from core.commands import NOT_TAKEN
from core.config import load_config
from core.store import connect
from mahavishnu.runtime.home import Home
from tests.mahavishnu.cli_harness import MAHAVISHNU, Running, run
from tests.waiting import wait_until


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


def states(up: Running, command_id: str) -> tuple[str, str, str]:
    """The command's state as `cmd status`, `mesh.q.commands.get` and `/api/commands/{id}` each say it."""
    status = run("cmd", "status", command_id, env=up.env)
    assert status.returncode == 0, status.stderr
    by_nats = asyncio.run(ask_nats(up, "mesh.q.commands.get", {"id": command_id}))
    by_http = ask_http(up, f"/api/commands/{command_id}")
    return json.loads(status.stdout)["state"], by_nats["state"], by_http["state"]


def sent(up: Running, *args: str) -> str:
    done = run("cmd", "send", *args, env=up.env, timeout=90)
    assert done.stdout.strip(), done.stderr
    command_id: str = json.loads(done.stdout)["command_id"] if "--wait" in args else done.stdout.strip()
    return command_id


def test_every_state_reads_the_same_through_the_cli_nats_and_http(up: Running, tmp_path: Path) -> None:
    enrolled = run("device", "enroll", "dev-all", "--out", str(tmp_path / "dev-all"), env=up.env)
    assert enrolled.returncode == 0, enrolled.stderr
    agent = subprocess.Popen(
        [MAHAVISHNU, "agent", "run", "--config", str(tmp_path / "dev-all" / "agent.toml")],
        env=up.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wanted = {
            "succeeded": sent(up, "dev-all", "ping", "--ttl", "60s", "--wait"),
            "failed": sent(up, "dev-all", "config.get", "--args", '{"key": "nope"}', "--wait"),
            "rejected": sent(up, "dev-all", "sleep", "--args", '{"seconds": -1}', "--wait"),
            "timed_out": sent(up, "dev-all", "sleep", "--args", '{"seconds": 30}', "--timeout", "1s", "--wait"),
        }
        for state, command_id in wanted.items():
            assert states(up, command_id) == (state, state, state), state

        running = sent(up, "dev-all", "sleep", "--args", '{"seconds": 60}', "--timeout", "90s")
        wait_until(lambda: states(up, running)[0] == "running", timeout=60, what="the sleep to be running")
        assert states(up, running) == ("running", "running", "running")
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.communicate(timeout=30)

    # An agentless device: a command waits as issued, and canceled once canceled.
    waiting = sent(up, "dev-none", "ping", "--ttl", "1h")
    assert states(up, waiting) == ("issued", "issued", "issued")
    assert run("cmd", "cancel", waiting, env=up.env).returncode == 0
    assert states(up, waiting) == ("canceled", "canceled", "canceled")
