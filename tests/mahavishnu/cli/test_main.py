"""The `mahavishnu` command as a user runs it: a real process, a real mesh, real signals."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import ssl
import subprocess
from pathlib import Path

import httpx
import pytest
from nats.aio.client import Client

from core.errors import StoreUnavailable
from core.events import MeshStarted
from core.store import EventStore, Identity, connect
from projections.database import DatabaseKeyError, open_encrypted
from tests.mahavishnu.cli_harness import (
    MAHAVISHNU,
    Running,
    environment,
    one_line_error,
    run,
    scrape_metrics,
    server_pid,
)
from tests.waiting import wait_until


async def test_up_serves_a_mesh_that_a_client_can_publish_to_and_read_from(up: Running) -> None:
    env_json = run("env", "--json", env=up.env)
    document = json.loads(env_json.stdout)
    assert set(document) == {"url", "ca", "cert", "key", "home"}
    identity = Identity(document["url"], Path(document["ca"]), Path(document["cert"]), Path(document["key"]))

    nc = await connect(identity, name="a-user", reconnect=False)
    try:
        ack = await nc.jetstream().publish("mesh.evt.device.tour.hello", b'{"type": "tour"}')
        store = EventStore(nc)
        read_back = [s async for s in store.read("mesh.evt.device.tour.>")]
        started = [s.event async for s in store.read("mesh.evt.mesh.>") if isinstance(s.event, MeshStarted)]
        listing = json.loads((await nc.request("mesh.q.devices.list", b"", timeout=10)).data)  # the query service
    finally:
        await nc.close()
    assert [s.seq for s in read_back] == [ack.seq]
    assert started and started[0].url == document["url"]
    assert listing == {"devices": [], "next": None}

    code, out = up.stop()
    assert code == 0
    assert "mesh is up" in out and "--tlscert" in out and "mesh stopped" in out


def test_up_exports_its_store_and_read_model_metrics(up: Running) -> None:
    wanted = (
        'mahavishnu_projection_lag_events{projection="devices"}',
        'mahavishnu_events_appended_total{stream="EVENTS"}',
    )
    samples = wait_until(
        lambda: (found := scrape_metrics(up)) and all(k in found for k in wanted) and found,
        timeout=30,
        what="the store and read-model metrics",
    )
    assert samples['mahavishnu_events_appended_total{stream="EVENTS"}'] >= 1  # mesh.started at least
    assert {f'mahavishnu_projection_parked{{projection="{name}"}}' for name in ("devices", "commands", "audit")} <= set(
        samples
    )
    assert 'mahavishnu_append_seconds_count{stream="EVENTS"}' in samples
    assert samples["mahavishnu_ready"] in (0.0, 1.0)


def test_up_restarts_a_crashed_server(up: Running) -> None:
    # `status --wait-ready` answers once the server does; up starts its probes last of all
    wait_until(lambda: scrape_metrics(up), timeout=30, what="up to have started everything it runs")
    first = wait_until(lambda: server_pid(up), timeout=10, what="the nats-server child")
    os.kill(first, signal.SIGKILL)
    second = wait_until(lambda: (pid := server_pid(up)) and pid != first and pid, timeout=30, what="a new server")
    assert second != first
    assert run("status", "--wait-ready", "30", env=up.env).returncode == 0
    code, _ = up.stop()
    assert code == 0, up.log()[-3000:]


def test_status_without_a_mesh_fails_in_one_line(tmp_path: Path) -> None:
    result = run("status", "--wait-ready", "0.5", env=environment(tmp_path / "nothing"))
    assert "mahavishnu up" in one_line_error(result)


def test_status_with_the_server_down_fails_in_one_line(tmp_path: Path) -> None:
    env = environment(tmp_path / "home")
    assert run("init", env=env).returncode == 0
    result = run("status", "--wait-ready", "1", env=env, timeout=30)
    assert "mahavishnu up" in one_line_error(result)


@pytest.mark.parametrize(
    "args",
    [("status", "--wait-ready", "soon"), ("frobnicate",), ("events", "read"), ("events", "read", ">", "--from", "0")],
)
def test_wrong_arguments_fail_in_one_line(tmp_path: Path, args: tuple[str, ...]) -> None:
    result = run(*args, env=environment(tmp_path))
    assert result.returncode == 2
    assert "--help" in one_line_error(result)


def test_a_corrupt_certificate_is_named(tmp_path: Path) -> None:
    env = environment(tmp_path / "home")
    assert run("init", env=env).returncode == 0
    (tmp_path / "home" / "control" / "cert.pem").write_text("-----BEGIN CERTIFICATE-----\ngarbage\n")
    message = one_line_error(run("status", env=env))
    assert "cert.pem" in message


def test_a_corrupt_ca_stops_up_in_one_line(tmp_path: Path) -> None:
    env = environment(tmp_path / "home")
    assert run("init", env=env).returncode == 0
    (tmp_path / "home" / "ca" / "ca.pem").write_text("not a certificate")
    message = one_line_error(run("up", env=env))
    assert "ca.pem" in message


def test_a_port_in_use_stops_up_in_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = environment(tmp_path / "home", MAHAVISHNU_SERVER__PORT=str(port))
        message = one_line_error(run("up", env=env))
    assert "in use" in message and "MAHAVISHNU_SERVER__PORT" in message


def test_a_wrong_setting_is_named(tmp_path: Path) -> None:
    env = environment(tmp_path / "home", MAHAVISHNU_SERVER__PORT="many")
    message = one_line_error(run("up", env=env))
    assert "MAHAVISHNU_SERVER__PORT" in message


def test_a_store_without_its_key_is_refused(tmp_path: Path) -> None:
    env = environment(tmp_path / "home")
    assert run("init", env=env).returncode == 0
    (tmp_path / "home" / "jetstream").mkdir(exist_ok=True)
    (tmp_path / "home" / "jetstream" / "something").write_text("x")
    (tmp_path / "home" / "nats" / "jetstream-key.conf").unlink()
    message = one_line_error(run("up", env=env))
    assert "key file" in message


def test_a_broken_configuration_file_is_named(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "mahavishnu.toml").write_text("[server]\nport = = 4\n")
    message = one_line_error(run("up", env=environment(home)))
    assert "mahavishnu.toml" in message


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("ca", "issue-client", "dev-a"), "mahavishnu ca init"),
        (("ca", "issue-client", "Not_A_Valid_Id"), "invalid identity"),
    ],
)
def test_ca_mistakes_fail_in_one_line(tmp_path: Path, args: tuple[str, ...], expected: str) -> None:
    env = environment(tmp_path / "home")
    if "Not_A_Valid_Id" in args:
        assert run("ca", "init", env=env).returncode == 0
    assert expected in one_line_error(run(*args, env=env))


def test_events_read_prints_what_up_recorded(up: Running) -> None:
    result = run("events", "read", "mesh.evt.mesh.>", env=up.env)
    assert result.returncode == 0, result.stderr
    [first, *_] = [json.loads(line) for line in result.stdout.splitlines()]
    assert first["event"]["type"] == "mesh.started.v1"
    assert first["seq"] >= 1


async def test_a_device_enrols_from_its_csr_connects_and_is_revoked(up: Running, tmp_path: Path) -> None:
    folder = tmp_path / "device"
    assert run("agent", "csr", "--id", "dev-cli", "--out", str(folder), env=up.env).returncode == 0
    enrolled = run("device", "enroll", "dev-cli", "--csr", str(folder / "csr.pem"), "--out", str(folder), env=up.env)
    assert enrolled.returncode == 0, enrolled.stderr
    assert "live" in run("device", "certificates", env=up.env).stdout
    shown = json.loads(run("device", "show", "dev-cli", env=up.env).stdout)
    assert [c["state"] for c in shown["certificates"]] == ["live"]
    assert one_line_error(run("device", "enroll", "dev-cli", env=up.env)).count("already") == 1

    identity = Identity(
        json.loads(run("env", "--json", env=up.env).stdout)["url"],
        folder / "ca.pem",
        folder / "cert.pem",
        folder / "key.pem",
    )
    device = await wait_for_connection(identity)
    await device.close()

    assert run("device", "revoke", "dev-cli", "--reason", "key_compromise", env=up.env).returncode == 0
    assert "revoked" in run("device", "certificates", env=up.env).stdout
    with pytest.raises(StoreUnavailable):
        await connect(identity, name="dev-cli", reconnect=False, connect_timeout=3)


async def wait_for_connection(identity: Identity) -> Client:
    """The server reloads its users a moment after enrolment: try until it accepts, with a deadline."""
    last: Exception | None = None
    for _ in range(100):
        try:
            return await connect(
                identity, name="dev-cli", reconnect=False, connect_timeout=2, inbox_prefix="_INBOX_dev-cli"
            )
        except StoreUnavailable as exc:
            last = exc
            await asyncio.sleep(0.05)  # poll until the reload lands, bounded by the loop count
    raise AssertionError(f"the enrolled device could not connect: {last}")


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("device", "enroll", "Bad_Id"), "invalid identity"),
        (("device", "enroll", "dev-z", "--csr", "/nonexistent/csr.pem"), "cannot read the CSR"),
        (("device", "revoke", "never-enrolled"), "never-enrolled"),
    ],
)
def test_device_mistakes_fail_in_one_line(up: Running, args: tuple[str, ...], expected: str) -> None:
    assert expected in one_line_error(run(*args, env=up.env))


def test_simulated_devices_answer_commands_sent_from_the_cli(up: Running) -> None:
    simulator = subprocess.Popen(
        [MAHAVISHNU, "agent", "run", "--simulate", "3"],
        env=up.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until(lambda: (up.home / "devices" / "sim-2" / "agent.toml").is_file(), timeout=60, what="enrolment")
        answered = run("cmd", "send", "sim-1", "echo", "--args", '{"hello": "mesh"}', "--wait", env=up.env)
        assert answered.returncode == 0, (answered.stdout, answered.stderr)
        assert json.loads(answered.stdout)["result"] == {"hello": "mesh"}
        refused = run("cmd", "send", "sim-2", "no-such-thing", "--wait", env=up.env)
        assert refused.returncode == 1
        assert json.loads(refused.stdout)["state"] == "rejected"
        latency = 'mahavishnu_command_seconds_count{outcome="%s"}'
        samples = wait_until(
            lambda: (
                (found := scrape_metrics(up)).get("mahavishnu_agents_connected") == 3
                and found.get(latency % "rejected")
                and found
            ),
            timeout=30,
            what="three connected agents and the command latencies in the metrics",
        )
        assert samples[latency % "succeeded"] == 1
        assert samples[latency % "rejected"] == 1
    finally:
        simulator.send_signal(signal.SIGTERM)
        _, err = simulator.communicate(timeout=30)
    assert simulator.returncode == 0, err


def test_cmd_mistakes_fail_in_one_line(up: Running) -> None:
    assert "--args" in one_line_error(run("cmd", "send", "dev-a", "ping", "--args", "{nope", env=up.env))
    assert "--ttl" in one_line_error(run("cmd", "send", "dev-a", "ping", "--ttl", "forever", env=up.env))
    assert "c-unknown" in one_line_error(run("cmd", "status", "c-unknown", env=up.env))


def test_up_keeps_the_read_models_and_guards_them(up: Running, tmp_path: Path) -> None:
    status = run("projections", "status", env=up.env)
    assert status.returncode == 0, status.stderr
    assert "devices: mesh.evt.device.> at " in status.stdout
    assert "commands: mesh.cmd.> at " in status.stdout
    assert run("operator", "add", "ann", "--role", "viewer", env=up.env).returncode == 0
    token = run("operator", "token", "ann", env=up.env).stdout.strip()
    api = f"https://127.0.0.1:{up.env['MAHAVISHNU_HTTP__PORT']}"  # HTTPS by default, from the mesh CA
    trust = ssl.create_default_context(cafile=up.home / "ca" / "ca.pem")
    answer = httpx.get(f"{api}/api/devices", headers={"Authorization": f"Bearer {token}"}, verify=trust, timeout=10)
    assert answer.status_code == 200 and answer.json() == {"devices": [], "next": None}
    assert httpx.get(f"{api}/api/devices", verify=trust, timeout=10).status_code == 401
    ann = ssl.create_default_context(cafile=up.home / "ca" / "ca.pem")
    ann.load_cert_chain(up.home / "operators" / "ann" / "cert.pem", up.home / "operators" / "ann" / "key.pem")
    assert httpx.get(f"{api}/api/projections", verify=ann, timeout=10).status_code == 200  # ann's certificate
    assert run("device", "enroll", "dev-rebuilt", "--out", str(tmp_path / "d"), env=up.env).returncode == 0
    rebuilt = run("projections", "rebuild", "devices", env=up.env)  # by the running up, with progress
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert "rebuilt by the running mesh" in rebuilt.stdout and "rebuilding devices [" in rebuilt.stderr
    assert "mahavishnu up" in one_line_error(run("db", "rekey", env=up.env))
    code, _ = up.stop()
    assert code == 0

    key_before = (up.home / "db.key").read_text()
    rekeyed = run("db", "rekey", env=up.env)
    assert rekeyed.returncode == 0, rekeyed.stderr
    key_after = (up.home / "db.key").read_text().strip()
    assert key_after != key_before.strip()
    assert (up.home / "db.key").stat().st_mode & 0o077 == 0

    async def opens(key: str) -> None:
        db = await open_encrypted(up.home / "readmodels" / "devices.db", key)
        await db.close()

    asyncio.run(opens(key_after))
    with pytest.raises(DatabaseKeyError):
        asyncio.run(opens(key_before.strip()))


def test_the_audit_trail_verifies_exports_and_catches_a_tampered_copy(up: Running, tmp_path: Path) -> None:
    assert run("device", "enroll", "dev-audited", "--out", str(tmp_path / "d"), env=up.env).returncode == 0
    assert run("device", "revoke", "dev-audited", env=up.env).returncode == 0
    verified = run("audit", "verify", env=up.env)
    assert verified.returncode == 0 and "intact" in verified.stdout, verified

    export = run("audit", "export", "--format", "jsonl", env=up.env)
    lines = [json.loads(line) for line in export.stdout.splitlines()]
    actions = [line["event"]["action"] for line in lines]
    assert actions.index("device.enroll") < actions.index("device.revoke")
    changed = actions.index("device.enroll")
    lines[changed]["event"]["target"] = "someone-else"
    tampered = tmp_path / "tampered.jsonl"
    tampered.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    caught = run("audit", "verify", "--file", str(tampered), env=up.env)
    assert caught.returncode == 1 and f"seq {lines[changed + 1]['seq']}:" in caught.stdout

    table = run("audit", "export", "--format", "csv", env=up.env)
    assert table.stdout.splitlines()[0].startswith("seq,at,actor,category,action")
    searches: list[subprocess.CompletedProcess[str]] = []

    def search() -> str:
        searches.append(run("audit", "search", "--action", "device.revoke", env=up.env))
        return searches[-1].stdout.strip()

    try:
        found = wait_until(search, timeout=90, what="the audit read model to catch up")
    except AssertionError as late:
        raise AssertionError(f"{late}; last search: {searches[-1].stderr}; up's log: {up.log()[-3000:]}") from None
    assert json.loads(found.splitlines()[0])["target"] == "dev-audited"
