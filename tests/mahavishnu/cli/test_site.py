"""`mahavishnu site ...` as a user runs it: two sites, one registered before `up` and one while it runs."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from core import subjects
from core.events import TelemetryReported
from core.store import EventStore, Identity, connect
from tests.harness import free_port
from tests.mahavishnu.cli_harness import MAHAVISHNU, environment, one_line_error, run, start_up, stop_up
from tests.waiting import wait_until


class SiteProcess:
    """`mahavishnu site up DIR` in a child process, its output collected line by line."""

    def __init__(self, bundle: Path, env: dict[str, str], *args: str) -> None:
        self.lines: list[str] = []
        self.process = subprocess.Popen(
            [MAHAVISHNU, "site", "up", str(bundle), *args],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip())

    def said(self, text: str) -> bool:
        return any(text in line for line in self.lines)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait(30)
        self._reader.join(5)
        assert self.process.stdout is not None
        self.process.stdout.close()
        return code


@pytest.fixture
def sites_started() -> Iterator[list[SiteProcess]]:
    started: list[SiteProcess] = []
    yield started
    for site in started:
        site.stop()


async def _append_as(device_folder: Path, device_id: str, port: int, count: int) -> None:
    identity = Identity(
        f"tls://127.0.0.1:{port}", device_folder / "ca.pem", device_folder / "cert.pem", device_folder / "key.pem"
    )
    nc = await connect(identity, name=device_id, inbox_prefix=subjects.device_inbox_prefix(device_id))
    try:
        store = EventStore(nc)
        for n in range(count):
            await store.append(TelemetryReported(device_id=device_id, metrics={"n": float(n)}))
    finally:
        await nc.close()


async def test_sites_registered_before_and_during_up_reach_the_hub(
    tmp_path: Path, sites_started: list[SiteProcess]
) -> None:
    leaf = str(free_port())
    home = tmp_path / "home"
    env = environment(home, MAHAVISHNU_LEAF__PORT=leaf)
    assert run("init", env=env).returncode == 0
    ports = {"site-b": free_port(), "site-c": free_port()}

    def add(name: str) -> str:
        listen = ("--host", "localhost", "--listen", "127.0.0.1", "--port", str(ports[name]))
        done = run("site", "add", name, *listen, env=env)
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert "the next `mahavishnu up` sources" in add("site-b")
    running = start_up(tmp_path, MAHAVISHNU_LEAF__PORT=leaf)
    try:
        env = running.env
        assert "the running hub sources the site's events from now on" in add("site-c")
        for device_id, site in (("dev-b1", "site-b"), ("dev-c1", "site-c")):
            enrolled = run("device", "enroll", device_id, "--site", site, env=env)
            assert enrolled.returncode == 0, enrolled.stderr
            assert f"tls://localhost:{ports[site]}" in (home / "devices" / device_id / "agent.toml").read_text()
        listed = run("site", "list", env=env).stdout
        assert "site-b" in listed and "dev-b1" in listed and "site-c" in listed and "dev-c1" in listed

        probe_port = free_port()
        for site, extra in (("site-b", ("--probe-port", str(probe_port))), ("site-c", ())):
            process = SiteProcess(home / "sites" / site, env, *extra)
            sites_started.append(process)
            wait_until(lambda p=process: p.said("is up: the hub sources"), timeout=60, what=f"{site}'s link")
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{probe_port}", timeout=5) as probes:
            assert (await probes.get("/health")).json() == {"status": "ok"}
            assert (await probes.get("/ready")).json() == {"ready": True}
            assert "mahavishnu_ready 1.0" in (await probes.get("/metrics")).text
        for device_id, site in (("dev-b1", "site-b"), ("dev-c1", "site-c")):
            await _append_as(home / "devices" / device_id, device_id, ports[site], 3)

        def telemetry_at_hub() -> list[str]:
            read = run("events", "read", "mesh.evt.device.*.telemetry", env=env)
            return [json.loads(line)["subject"] for line in read.stdout.splitlines()] if read.returncode == 0 else []

        held = wait_until(lambda: len(telemetry_at_hub()) == 6 and telemetry_at_hub(), timeout=60, what="6 events")
        assert sorted(held) == sorted([subjects.device_event(d, "telemetry") for d in ("dev-b1", "dev-c1")] * 3)
        wait_until(
            lambda: "hub copied up to 3, site at 3" in run("site", "list", env=env).stdout,
            timeout=30,
            what="site list to show site-b caught up",
        )
        removed = run("site", "remove", "site-b", env=env)
        assert removed.returncode == 0, removed.stderr
        assert "its certificate is revoked" in removed.stdout and "the events it copied stay" in removed.stdout
        assert "live links cut: 1" in removed.stdout  # at once, not at the link's next drop
        wait_until(lambda: sites_started[0].said("cannot reach the hub"), timeout=30, what="site-b to lose its link")
        assert "site-b" not in run("site", "list", env=env).stdout
        for process in sites_started:
            assert process.stop() == 0
            assert process.said("stopped")
    finally:
        stop_up(running)


def test_a_site_needs_the_hubs_leaf_listener(tmp_path: Path) -> None:
    env = environment(tmp_path / "home")  # [leaf] port = 0, the default
    assert run("init", env=env).returncode == 0
    assert "[leaf] port = 7422" in one_line_error(run("site", "add", "site-x", env=env))
    assert "not a site bundle" in one_line_error(run("site", "up", str(tmp_path), env=env))


def test_a_command_sent_at_the_hub_runs_at_its_site_and_wait_sees_it_end(
    tmp_path: Path, sites_started: list[SiteProcess]
) -> None:
    running = start_up(tmp_path, MAHAVISHNU_LEAF__PORT=str(free_port()))
    home, env, port = running.home, running.env, free_port()
    agent: subprocess.Popen[str] | None = None
    try:
        added = run(
            "site", "add", "site-d", "--host", "localhost", "--listen", "127.0.0.1", "--port", str(port), env=env
        )
        assert added.returncode == 0, added.stderr
        enrolled = run("device", "enroll", "dev-d1", "--site", "site-d", env=env)
        assert enrolled.returncode == 0, enrolled.stderr
        site = SiteProcess(home / "sites" / "site-d", env)
        sites_started.append(site)
        wait_until(lambda: site.said("is up: the hub sources"), timeout=60, what="site-d's link")
        config = home / "devices" / "dev-d1" / "agent.toml"
        agent = subprocess.Popen(
            [MAHAVISHNU, "agent", "run", "--config", str(config)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        # --ttl 1h: were the device's reports, which reach the hub by sourcing, not seen by --wait,
        # it would sit until its deadline (over an hour), far past this run's timeout.
        args = ("--args", '{"hello": "site"}', "--ttl", "1h", "--wait")
        answered = run("cmd", "send", "dev-d1", "echo", *args, env=env, timeout=120)
        assert answered.returncode == 0, (answered.stdout, answered.stderr)
        assert json.loads(answered.stdout)["result"] == {"hello": "site"}
        status = run("cmd", "status", json.loads(answered.stdout)["command_id"], env=env)
        assert json.loads(status.stdout)["state"] == "succeeded"
    finally:
        if agent is not None:
            agent.send_signal(signal.SIGTERM)
            agent.wait(30)
        stop_up(running)
