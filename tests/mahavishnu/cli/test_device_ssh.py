"""SSH-managed hosts as an operator uses them: `device add-ssh`, `cmd send ... --wait` through a running `up`.

The gateway logs in with a passphrase-protected key; neither the key nor the passphrase
may reach the logs, the streams or the audit trail.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from mahavishnu.gateways.ssh.hosts import parse_host_key
from tests.mahavishnu.cli_harness import Running, one_line_error, run, scrape_metrics, start_up, stop_up
from tests.mahavishnu.sshd import Sshd, start_sshd, write_key
from tests.waiting import wait_until

PASSPHRASE = "correct horse battery staple 7f3a"


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[Sshd]:
    key = tmp_path / "gateway_key"
    write_key(key, passphrase=PASSPHRASE)
    server = start_sshd(tmp_path / "sshd", client_key_path=key)
    yield server
    server.stop()


@pytest.fixture
def mesh_up(tmp_path: Path) -> Iterator[Running]:
    (tmp_path / "mesh").mkdir()
    running = start_up(tmp_path / "mesh", MAHAVISHNU_LOGGING__LEVEL="debug")  # the most the logs ever say
    yield running
    stop_up(running)


def test_an_ssh_host_runs_commands_like_an_agent_and_its_credentials_stay_secret(
    mesh_up: Running, sshd: Sshd, tmp_path: Path
) -> None:
    env = mesh_up.env
    passphrase_file = tmp_path / "gateway_key.pass"
    passphrase_file.write_text(PASSPHRASE + "\n")
    address = ["--host", "127.0.0.1", "--port", str(sshd.port), "--user", sshd.user]
    login = ["--identity-file", str(sshd.client_key_path), "--passphrase-file", str(passphrase_file)]

    refused = one_line_error(run("device", "add-ssh", "web-1", *address, *login, env=env))
    assert "--trust-on-first-use" in refused and "exactly one of" in refused  # no silent trust on first use
    wrong = tmp_path / "wrong.pass"
    wrong.write_text("not it\n")
    bad = one_line_error(
        run("device", "add-ssh", "web-1", *address, "--host-key", sshd.host_key_line,
            "--identity-file", str(sshd.client_key_path), "--passphrase-file", str(wrong), env=env)
    )  # fmt: skip
    assert f"cannot decrypt the identity file {sshd.client_key_path}" in bad and "not it" not in bad

    added = run(
        "device", "add-ssh", "web-1", *address, "--host-key", sshd.host_key_line, *login,
        "--allow", "uname -a", env=env,
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    pinned = parse_host_key(sshd.host_key_line).fingerprint
    assert f"host key {pinned} (pinned)" in added.stdout
    credentials = mesh_up.home / "ssh" / "credentials.json"
    assert credentials.stat().st_mode & 0o077 == 0
    assert json.loads(credentials.read_text())["web-1"]["identity_file"] == str(sshd.client_key_path)

    half = one_line_error(run("device", "add-ssh", "web-2", *address, "--health-check", "true", env=env))
    assert "--health-check apply to updates only: add --update-dir" in half
    updates = ["--device-type", "web", "--update-dir", "/opt/web-2/", "--health-check", "true"]
    tofu = run("device", "add-ssh", "web-2", *address, "--trust-on-first-use", *login, *updates, env=env)
    assert tofu.returncode == 0, tofu.stderr
    assert f"host key {pinned} (trusted on first use)" in tofu.stdout and "unverified" in tofu.stdout
    assert "updates for device type web go to /opt/web-2" in tofu.stdout

    sent = run("cmd", "send", "web-1", "exec", "--args", '{"argv": ["uname", "-a"]}', "--wait", env=env)
    assert sent.returncode == 0, (sent.stdout, sent.stderr)
    outcome = json.loads(sent.stdout)
    assert outcome["state"] == "succeeded" and outcome["result"]["stdout"].startswith("Linux")
    ping = run("cmd", "send", "web-2", "ping", "--wait", env=env)
    assert ping.returncode == 0 and json.loads(ping.stdout)["result"]["pong"] is True
    samples = scrape_metrics(mesh_up)  # up exports the gateway's metrics
    assert samples['mahavishnu_ssh_commands_total{outcome="succeeded"}'] == 2
    assert samples['mahavishnu_ssh_connections_total{outcome="opened"}'] == 2  # one per host, reused
    assert samples['mahavishnu_ssh_connections_total{outcome="host_key_refused"}'] == 0
    assert "mahavishnu_ssh_connections_open" in samples  # 2, until [ssh] idle_timeout closes them

    assert run("operator", "add", "ssh-viewer", "--role", "viewer", env=env).returncode == 0
    token = run("operator", "token", "ssh-viewer", env=env).stdout.strip()
    trust = ssl.create_default_context(cafile=mesh_up.home / "ca" / "ca.pem")

    def listed() -> dict[str, str]:
        answer = httpx.get(
            f"https://127.0.0.1:{env['MAHAVISHNU_HTTP__PORT']}/api/devices",
            headers={"Authorization": f"Bearer {token}"},
            verify=trust,
            timeout=10,
        )
        return {d["device_id"]: d["transport"] for d in answer.json()["devices"]}

    assert wait_until(listed, timeout=30, what="the devices read model") == {"web-1": "ssh", "web-2": "ssh"}

    history = "".join(
        run("events", "read", stream, env=env).stdout for stream in ("mesh.evt.>", "mesh.cmd.>", "mesh.audit.>")
    )
    assert "device.ssh_registered.v1" in history and "command.succeeded.v1" in history
    key_text = sshd.client_key_path.read_text()
    secrets = [PASSPHRASE, *(line for line in key_text.splitlines() if len(line) > 20 and "PRIVATE KEY" not in line)]
    places = {"the streams": history, "up's log": mesh_up.log(), "the credentials file": credentials.read_text()}
    for where, text in places.items():
        leaked = [secret[:12] + "..." for secret in secrets if secret in text]
        assert not leaked, f"{where} hold credential material: {leaked}"
    assert "gateway_key" not in history  # not even where the key is
