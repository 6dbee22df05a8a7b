"""The command line loads what its verb runs and nothing more, and its modules import in one direction.

Beside tests/edge/test_isolation.py (a device's agent loads no control-plane package):
here `mahavishnu --help` loads no package of ours but the verb table, and a verb loads
no long-running service that only `up` (or `site up`, or `agent run`) runs.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from mahavishnu.cli.verbs import VERBS

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
