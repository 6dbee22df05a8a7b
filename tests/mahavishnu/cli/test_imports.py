"""The command line loads what its verb runs and nothing more, and its modules import in one direction.

Beside tests/edge/test_isolation.py (a device's agent loads no control-plane package):
here `mahavishnu --help` loads no package of ours but the verb table, a verb loads no
long-running service that only `up` (or `site up`, or `agent run`) runs, and `agent run
--config` on a control host loads none of the control plane while it runs.
"""

from __future__ import annotations

import ast
import asyncio
import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from nats.aio.msg import Msg

from core import subjects
from core.store import EventStore
from mahavishnu.cli.verbs import VERBS
from mahavishnu.control import commands, devices
from tests.harness import Mesh
from tests.outcomes import follow_outcome

ROOT = Path(__file__).resolve().parents[3]
CLI = ROOT / "mahavishnu" / "cli"

# The services `up` runs, and the libraries only they need.
SERVICES = {
    "mahavishnu.runtime.up",
    "mahavishnu.runtime.supervisor",
    "mahavishnu.runtime.cluster",
    "mahavishnu.gateways.mqtt.bridge",
    "mahavishnu.gateways.ssh.gateway",
    "mahavishnu.gateways.ssh.pool",
    "mahavishnu.gateways.shell.broker",
    "mahavishnu.observability.agents_online",
    "mahavishnu.observability.command_latency",
    "mahavishnu.observability.connection_audit",
    "mahavishnu.sites.runner",
    "projections.query_service",
    "projections.http_api",
    "projections.codeindex.service",
    "projections.codeindex.poller",
    "edge.agent",
    "asyncssh",
    "paho",
    "starlette",
    "uvicorn",
}
# A verb that runs a service may load it.
RUNS = {
    "up": SERVICES,
    "site": {"mahavishnu.sites.runner", "mahavishnu.runtime.supervisor", "starlette", "uvicorn"},
    "agent": {"edge.agent"},
}

LOADED_BY = """
import json, sys
from mahavishnu.cli.main import build_parser
build_parser(sys.argv[1:])
print(json.dumps(sorted(sys.modules)))
"""


def loaded_by(*argv: str) -> set[str]:
    """The modules a fresh interpreter holds once the parser for `argv` is built (the verb's module imported)."""
    ran = subprocess.run(
        [sys.executable, "-c", LOADED_BY, *argv], cwd=ROOT, capture_output=True, text=True, check=True, timeout=60
    )
    return set(json.loads(ran.stdout))


def within(modules: set[str], names: set[str]) -> list[str]:
    return sorted(m for m in modules if any(m == name or m.startswith(name + ".") for name in names))


def test_help_loads_only_the_verb_table() -> None:
    ours = {"core", "certs", "edge", "projections", "mahavishnu"}
    loaded = sorted(m for m in loaded_by() if m.split(".")[0] in ours)
    assert loaded == [
        "mahavishnu",
        "mahavishnu.cli",
        "mahavishnu.cli.main",
        "mahavishnu.cli.running",
        "mahavishnu.cli.verbs",
    ]
    assert within(loaded_by(), {"nats", "msgspec", "cryptography"}) == []


@pytest.mark.parametrize("verb", sorted(VERBS))
def test_a_verb_loads_no_service_it_does_not_run(verb: str) -> None:
    modules = loaded_by(verb)
    assert VERBS[verb].module in modules
    assert within(modules, SERVICES - RUNS.get(verb, set())) == []


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_verb_modules_do_not_import_the_entry_point_or_each_other() -> None:
    """No cycle: main imports verbs lazily; a verb imports shared helpers, never main or another verb."""
    verb_modules = {verb.module for verb in VERBS.values()}
    wrong = []
    for path in sorted(CLI.glob("*.py")):
        module = f"mahavishnu.cli.{path.stem}"
        if path.stem in ("__init__", "__main__", "main"):
            continue
        for name in sorted(_imports(path)):
            if name == "mahavishnu.cli.main" or (name in verb_modules and name != module):
                wrong.append(f"{path.name} imports {name}")
    assert wrong == []


def test_every_verb_module_has_add() -> None:
    for name, verb in VERBS.items():
        path = ROOT / (verb.module.replace(".", "/") + ".py")
        defined = {n.name for n in ast.parse(path.read_text()).body if isinstance(n, ast.FunctionDef)}
        assert "add" in defined, f"{name}: {verb.module} has no add()"


# `agent run --config` on a control host (the full install), through the entry point the
# `mahavishnu` script calls: everything it loads while it connects, reports and runs a
# command, printed once SIGTERM has stopped it.
RUN_AND_LIST = """
import json, sys
sys.argv[0] = "mahavishnu"
from mahavishnu.cli import main
code = main()
print(json.dumps({"exit": code, "modules": sorted(sys.modules)}))
"""
# What of ours a device's agent may load: the command line's entry and its runner (not
# argparse's parser: mahavishnu.cli.running), the edge package, and core's light modules
# (tests/edge/test_isolation.py names them).
AGENT_MAY_LOAD = {"mahavishnu", "mahavishnu.cli", "mahavishnu.cli.running", "mahavishnu.cli.agent_runner"}
AGENT_MAY_LOAD |= {"core.logs", "core.redaction", "core.lazy"}
# What an agent that connected, reported and ran a command has no use for, each of which
# was memory it held while idle (bench/agent_footprint.py): argparse (and its gettext),
# nats micro (a service framework; core.errors names core.micro's refusals lazily), the
# event catalog and its decoder of every event (core.events loads each module when asked;
# commands are read by core.events.command.decode_command), the simulator's handler, and
# the probe server (only with probe_port).
AN_AGENT_NEVER_LOADS = {"argparse", "gettext", "nats.micro", "core.micro", "core.events.codec", "core.campaigns"}
AN_AGENT_NEVER_LOADS |= {f"core.events.{m}" for m in ("audit", "campaign", "claim", "code", "mesh", "repo", "ssh")}
AN_AGENT_NEVER_LOADS |= {"core.events.update", "edge.simulate", "edge.probes", "mahavishnu.cli.main"}
# Its state is LMDB (edge.state): SQLite is loaded only to carry over an older agent's file.
AN_AGENT_NEVER_LOADS |= {"sqlite3", "_sqlite3", "edge.state_migration"}
# The control plane's own libraries; uvloop is not one (the agent runs on it where installed).
CONTROL_PLANE_LIBRARIES = {"cryptography", "sqlcipher3", "aiosqlite", "prometheus_client", "starlette", "uvicorn"}
CONTROL_PLANE_LIBRARIES |= {"asyncssh", "pygit2", "paho", "detect_secrets", "httpx"}


def run_and_list(*argv: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", RUN_AND_LIST, *argv],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


async def test_agent_run_on_a_control_host_loads_no_control_plane(
    mesh: Mesh, store: EventStore, tmp_path: Path
) -> None:
    from tests.edge.test_isolation import _allowed_core

    device = f"dev-{uuid.uuid4().hex[:8]}"
    enrolment = await devices.enroll(
        mesh.home, mesh.settings, store, device, out_dir=tmp_path / device, url=mesh.identity.url
    )
    reported: set[str] = set()
    all_reported = asyncio.Event()

    async def seen(msg: Msg) -> None:
        reported.add(msg.subject.rsplit(".", 1)[-1])
        if {"reported", "heartbeat", "telemetry"} <= reported:
            all_reported.set()

    await store.nc.subscribe(subjects.device_events(device), cb=seen)
    # No state directory and a wrong mahavishnu.toml override: the agent reads its agent.toml only.
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAHAVISHNU_")}
    env |= {"MAHAVISHNU_HOME": str(tmp_path / "none"), "MAHAVISHNU_SERVER__PORT": "not a port"}
    env |= {"MAHAVISHNU_LOGGING__LEVEL": "warning", "PYTHONPATH": str(ROOT)}
    agent = run_and_list("agent", "run", "--config", str(enrolment.agent_config), env=env)
    try:
        await asyncio.wait_for(all_reported.wait(), 60)  # every loop has run once
        command = await commands.send(store, device, "ping", {}, ttl_s=60, timeout_s=5, actor="control")
        assert (await follow_outcome(store, command, deadline_s=60)).state == "succeeded"
    finally:
        agent.send_signal(signal.SIGTERM)
        out, err = agent.communicate(timeout=30)
    assert agent.returncode == 0, err
    report = json.loads(out)
    assert report["exit"] == 0
    modules: set[str] = set(report["modules"])

    ours = {m for m in modules if m.split(".")[0] in {"core", "certs", "edge", "projections", "mahavishnu"}}
    wrong = sorted(m for m in ours if m not in AGENT_MAY_LOAD and not m.startswith("edge") and not _allowed_core(m))
    assert wrong == []  # e.g. mahavishnu.runtime, mahavishnu.control, core.config, projections
    assert within(modules, CONTROL_PLANE_LIBRARIES) == []
    assert within(modules, AN_AGENT_NEVER_LOADS) == []
