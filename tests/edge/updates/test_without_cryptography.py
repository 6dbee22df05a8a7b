"""A device's edge install has no pyca/cryptography: the verifier checks ed25519 signatures without it.

securesystemslib falls back to its pure-Python ed25519 when cryptography cannot be imported;
a child interpreter that refuses to import it verifies a repository signed here, and a
stranger's signature is still refused there.
"""

from __future__ import annotations

from pathlib import Path

from tests.child import python_json
from tests.edge.updates.test_tuf_specification import Repository

CHILD = """
import asyncio, importlib.abc, json, sys
from pathlib import Path

class NoCryptography(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] == "cryptography":
            raise ImportError("the edge install has no cryptography")

sys.meta_path.insert(0, NoCryptography())
from edge.updates.errors import UpdateRefused
from edge.updates.trust import verify
from tests.edge.updates.test_tuf_specification import DictFetcher

async def main():
    repository, trusted = Path(sys.argv[1]), Path(sys.argv[2])
    files = {path.name: path.read_bytes() for path in repository.iterdir()}
    try:
        target = await verify(DictFetcher(files), trusted, name="app", version="1.0", device_type="pump",
                              installed_version=None)
        answer = {"sha256": target.sha256}
    except UpdateRefused as exc:
        answer = {"refusal": str(exc.refusal)}
    answer["cryptography"] = "cryptography" in sys.modules
    print(json.dumps(answer))

asyncio.run(main())
"""


def run_child(files: dict[str, bytes], folder: Path, trusted: Path) -> dict[str, object]:
    folder.mkdir()
    for name, data in files.items():
        (folder / name).write_bytes(data)
    answer: dict[str, object] = python_json(CHILD, str(folder), str(trusted))
    return answer


def test_a_device_without_cryptography_verifies_ed25519_signatures(tmp_path: Path) -> None:
    repo = Repository()
    verified = run_child(repo.files, tmp_path / "repo", repo.trusted(tmp_path / "trusted"))
    assert verified == {"sha256": "cd" * 32, "cryptography": False}

    stranger = Repository()
    repo.files["timestamp.json"] = stranger.files["timestamp.json"]  # signed by another repository's key
    refused = run_child(repo.files, tmp_path / "forged", repo.trusted(tmp_path / "trusted-2"))
    assert refused == {"refusal": "signatures", "cryptography": False}


def test_an_idle_agent_loads_no_part_of_python_tuf() -> None:
    modules: list[str] = python_json("import json, sys, edge.agent; print(json.dumps(sorted(sys.modules)))")
    loaded = {name.split(".")[0] for name in modules}
    assert loaded & {"tuf", "securesystemslib", "urllib3"} == set()
    assert not any(name.startswith("edge.updates") for name in modules)
