"""`mahavishnu agent` as a device runs it: only the edge install's packages, real signals, a real mesh."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from core.store import EventStore
from mahavishnu.control import commands, devices
from tests.harness import Mesh, free_port
from tests.outcomes import follow_outcome

ROOT = Path(__file__).resolve().parents[3]

# Runs the real CLI with the control plane's packages made unimportable, as on a device
# that installed only the `edge` extra (nats-py and msgspec).
EDGE_ONLY = """
import importlib.abc, sys
BLOCKED = {"cryptography", "certs", "prometheus_client", "starlette", "uvicorn", "projections", "uvloop"}
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{name} is not installed on this device")
        return None
sys.meta_path.insert(0, Block())
from mahavishnu.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


def agent_process(*args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MAHAVISHNU_LOGGING__LEVEL": "warning"}
    return subprocess.Popen(
        [sys.executable, "-c", EDGE_ONLY, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


async def test_an_edge_only_agent_runs_commands_and_stops_cleanly_on_sigterm(
    mesh: Mesh, store: EventStore, tmp_path: Path
) -> None:
    device = f"dev-{uuid.uuid4().hex[:8]}"
    made = agent_process("agent", "csr", "--id", device, "--out", str(tmp_path / "dev"))
    _, err = made.communicate(timeout=60)
    assert made.returncode == 0, err
    assert (tmp_path / "dev" / "key.pem").stat().st_mode & 0o077 == 0
    enrolment = await devices.enroll(
        mesh.home,
        mesh.settings,
        store,
        device,
        out_dir=tmp_path / "dev",
        csr_pem=(tmp_path / "dev" / "csr.pem").read_bytes(),
        url=mesh.identity.url,
    )

    probe_port = free_port()
    with enrolment.agent_config.open("a") as config:
        config.write(f"probe_port = {probe_port}\n")
    agent = agent_process("agent", "run", "--config", str(enrolment.agent_config))
    try:
        command = await commands.send(store, device, "ping", {}, ttl_s=60, timeout_s=5, actor="control")
        view = await follow_outcome(store, command, deadline_s=60)
        assert view.state == "succeeded", agent.stderr

        # Its probes, served without prometheus-client or any web framework (blocked above).
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{probe_port}", timeout=5) as http:
            assert (await http.get("/health")).json() == {"status": "ok"}
            ready = await eventually_async(lambda: http.get("/ready"), lambda r: r.status_code == 200, timeout=30)
            assert ready.json() == {"ready": True}  # connected, and the outcome has reached the mesh
            metrics = (await http.get("/metrics")).text
            assert (await http.get("/nope")).status_code == 404
        families = {family.name: family for family in text_string_to_metric_families(metrics)}
        finished = {s.labels["outcome"]: s.value for s in families["mahavishnu_agent_commands"].samples}
        assert finished == {"succeeded": 1.0}
        assert families["mahavishnu_agent_connected"].samples[0].value == 1.0
    finally:
        agent.send_signal(signal.SIGTERM)
        _, err = agent.communicate(timeout=30)
    assert agent.returncode == 0, err


def test_the_device_install_has_no_control_commands(tmp_path: Path) -> None:
    process = agent_process("ca", "list")
    _, err = process.communicate(timeout=60)
    assert process.returncode == 2
    assert "invalid choice" in err


async def eventually_async(
    ask: Callable[[], Awaitable[httpx.Response]], good: Callable[[httpx.Response], bool], *, timeout: float
) -> httpx.Response:
    """Ask until the answer is good; AssertionError with the last answer at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        answer = await ask()
        if good(answer):
            return answer
        if time.monotonic() > deadline:
            raise AssertionError(f"no good answer within {timeout} s; the last: {answer.status_code} {answer.text}")
        await asyncio.sleep(0.05)  # poll interval, bounded by the deadline above
