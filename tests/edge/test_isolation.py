"""A device installs nats-py, msgspec, py-lmdb and python-tuf: edge/ must not import the control plane's packages."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

from tests.child import python_json

ROOT = Path(__file__).resolve().parents[2]
EDGE = ROOT / "edge"

FORBIDDEN = {"cryptography", "prometheus_client", "starlette", "uvicorn", "certs", "mahavishnu", "projections"}
ALLOWED_CORE = ("core", "core.errors", "core.subjects", "core.events", "core.commands", "core.store", "core.streams")
# The campaign events' own types (their spec and states: msgspec structs and enums), which
# the event codec knows like every other event's; not the fold (core.campaigns.state).
ALLOWED_CORE += ("core.campaigns", "core.campaigns.spec", "core.campaigns.states")
# Software updates' names and states (pure), and the redaction of what hook scripts print.
ALLOWED_CORE += ("core.updates", "core.updates.naming", "core.updates.states", "core.updates.objects", "core.redaction")
ALLOWED_CORE += ("core.updates.versions",)  # the downgrade check's order, the read models' too
ALLOWED_CORE += ("core.lazy",)  # core.events and core.store load their names when asked
THIRD_PARTY = {"msgspec", "nats", "lmdb"}
# python-tuf (with its securesystemslib) is in the edge install too, for edge/updates only:
# the verifier, loaded while an update runs (an idle agent loads none of it: tests/edge/updates).
UPDATES_ONLY = {"tuf", "securesystemslib"}

# The edge install has no pyca/cryptography (securesystemslib then verifies ed25519 in pure
# Python); this interpreter has it, so the child refuses it as the device would not find it.
IMPORT_EVERYTHING = """
import importlib, importlib.abc, json, pkgutil, sys
class NoCryptography(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] == "cryptography":
            raise ImportError("the edge install has no cryptography")
sys.meta_path.insert(0, NoCryptography())
import edge
names = ["edge"] + [m.name for m in pkgutil.walk_packages(edge.__path__, "edge.")]
for name in names:
    importlib.import_module(name)
print(json.dumps({"imported": names, "modules": sorted(sys.modules)}))
"""


def _allowed_core(module: str) -> bool:
    return any(
        module == allowed or module.startswith(("core.events.", "core.commands.", "core.store."))
        for allowed in ALLOWED_CORE
    )


def _module(path: Path) -> str:
    """The dotted name of a module file under edge/ (a package's __init__ is the package)."""
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_importing_every_edge_module_loads_nothing_forbidden() -> None:
    report = python_json(IMPORT_EVERYTHING)
    modules: list[str] = report["modules"]

    expected = {_module(p) for p in EDGE.rglob("*.py")}
    assert set(report["imported"]) == expected
    assert sorted(m for m in modules if m.split(".")[0] in FORBIDDEN | {"aiosqlite"}) == []
    assert sorted(m for m in modules if m.split(".")[0] == "core" and not _allowed_core(m)) == []


def test_edge_source_imports_only_the_stdlib_msgspec_nats_and_light_core() -> None:
    wrong: list[str] = []
    for path in sorted(EDGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                # `from core import config` imports the module core.config: check what follows "core" too.
                names = [node.module] + [f"core.{a.name}" for a in node.names if node.module == "core"]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top in sys.stdlib_module_names or top in THIRD_PARTY or top == "edge":
                    continue
                if top in UPDATES_ONLY and path.is_relative_to(EDGE / "updates"):
                    continue
                if top == "core" and _allowed_core(name):
                    continue
                wrong.append(f"{path.name}:{node.lineno} imports {name}")

    assert wrong == []
