"""update.install: its arguments, its outcomes as command events, its report after a restart, its lazy imports."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from core.events import CommandFailed, CommandSucceeded
from core.updates.states import INSTALL_COMMAND
from edge.agent_config import UpdateConfig
from edge.errors import CommandError, InvalidArguments
from edge.handlers import HandlerContext, Registry
from edge.lifecycle import recovered_events
from edge.state import AgentState
from edge.updates.errors import Refusal, UpdateRefused
from edge.updates.handler import InstallHandler, start
from edge.updates.record import Records
from tests.child import python_json
from tests.edge.samples import DEVICE, issued
from tests.edge.updates.kit import LocalSteps, release


def settings(tmp_path: Path) -> UpdateConfig:
    return UpdateConfig(
        device_type="pump",
        installer="ab",
        folder=tmp_path / "app",
        trust=tmp_path / "trust",
        downloads=tmp_path / "updates",
    )


class LocalInstall(InstallHandler):
    """The real handler with the mesh's two steps done on local files."""

    local: LocalSteps

    def steps(self, connection: Any) -> Any:
        return self.local.verify, self.local.download


async def handler(state: AgentState, tmp_path: Path, versions: tuple[str, ...] = ("1.0",)) -> LocalInstall:
    started = await start(settings(tmp_path), DEVICE, Records(state))
    local = LocalInstall(
        settings=started.settings, device_id=DEVICE, records=started.records, installer=started.installer
    )
    local.local = LocalSteps({v: release(tmp_path, v) for v in versions})
    return local


@pytest.mark.parametrize(
    ("args", "says"),
    [
        ({"version": "1.0"}, "needs 'name', a string"),
        ({"name": "app"}, "needs 'version', a string"),
        ({"name": "App Name", "version": "1.0"}, "artifact name 'App Name'"),
        ({"name": "app", "version": "../1"}, "artifact version '../1'"),
        ({"name": "app", "version": "1.0", "allow_downgrade": "yes"}, "'allow_downgrade' must be true or false"),
        ({"name": "app", "version": "1.0", "force": True}, "does not take 'force'"),
    ],
)
async def test_wrong_arguments_are_rejected_before_anything_runs(
    state: AgentState, tmp_path: Path, args: dict[str, Any], says: str
) -> None:
    install = await handler(state, tmp_path)
    with pytest.raises(InvalidArguments, match=says):
        install.validate(args)


async def test_a_committed_update_is_the_commands_result_and_its_software(state: AgentState, tmp_path: Path) -> None:
    install = await handler(state, tmp_path)
    install.validate({"name": "app", "version": "1.0", "allow_downgrade": False})
    context = HandlerContext(device_id=DEVICE, config=state, command_id="c-1", connection=object())

    result = await install.run({"name": "app", "version": "1.0"}, context)

    assert result == {"state": "committed", "name": "app", "version": "1.0", "previous": None}
    assert install.software() == {"app": "1.0"}
    assert install.recovered("c-1") == result and install.recovered("c-unknown") is None


async def test_a_refusal_is_a_command_failure_naming_the_refusal(state: AgentState, tmp_path: Path) -> None:
    install = await handler(state, tmp_path)
    install.local.refuse = UpdateRefused(Refusal.HASH, "app 1.0 is not the signed artifact")
    context = HandlerContext(device_id=DEVICE, config=state, command_id="c-1", connection=object())

    with pytest.raises(CommandError, match=r"^update refused \(hash\): app 1.0 is not the signed artifact$"):
        await install.run({"name": "app", "version": "1.0"}, context)
    recovered = install.recovered("c-1")
    assert isinstance(recovered, CommandError) and recovered.message.startswith("update refused (hash)")


async def test_without_the_agents_connection_the_update_does_not_start(state: AgentState, tmp_path: Path) -> None:
    install = await start(settings(tmp_path), DEVICE, Records(state))
    with pytest.raises(CommandError, match="needs the agent's connection"):
        await install.run(
            {"name": "app", "version": "1.0"}, HandlerContext(device_id=DEVICE, config=state, command_id="c")
        )
    assert Records(state).get("c") is None


async def test_an_interrupted_update_reports_how_its_recovery_ended_it(state: AgentState, tmp_path: Path) -> None:
    install = await handler(state, tmp_path)
    registry = Registry([install])
    context = HandlerContext(device_id=DEVICE, config=state, command_id="c-1", connection=object())
    await install.run({"name": "app", "version": "1.0"}, context)

    [event] = recovered_events(issued(INSTALL_COMMAND, {"name": "app", "version": "1.0"}, command_id="c-1"), registry)
    assert isinstance(event, CommandSucceeded) and event.result["state"] == "committed"
    assert recovered_events(issued(INSTALL_COMMAND, command_id="c-none"), registry) is None
    assert recovered_events(issued("ping", command_id="c-1"), registry) is None

    install.local.refuse = UpdateRefused(Refusal.DOWNGRADE, "older")
    with pytest.raises(CommandError):
        await install.run(
            {"name": "app", "version": "1.0"},
            HandlerContext(device_id=DEVICE, config=state, command_id="c-2", connection=1),
        )
    [failed] = recovered_events(issued(INSTALL_COMMAND, command_id="c-2"), registry)
    assert isinstance(failed, CommandFailed) and failed.error == "update refused (downgrade): older"


LOADED = """
import asyncio, json, sys
from pathlib import Path
from edge import load_agent_config
from edge.agent import Agent
from edge.state import AgentState

config = load_agent_config(sys.argv[1], check_files=False)
Agent(config)
ours = lambda m: m.startswith("edge.updates") or m.split(".")[0] in ("tuf", "securesystemslib")
idle = sorted(filter(ours, sys.modules))
if config.update is not None:
    from edge.updates.handler import start
    from edge.updates.record import Records

    with AgentState(Path(sys.argv[2])) as state:
        asyncio.run(start(config.update, config.device_id, Records(state)))
started = sorted(filter(ours, sys.modules))
print(json.dumps({"idle": idle, "started": started}))
"""


def loaded(config: Path, state: Path) -> dict[str, list[str]]:
    loaded_modules: dict[str, list[str]] = python_json(LOADED, str(config), str(state))
    return loaded_modules


def test_an_agent_loads_the_updates_only_with_an_update_section_and_python_tuf_only_while_updating(
    tmp_path: Path,
) -> None:
    base = 'device_id = "pump-7"\nservers = ["tls://m:4222"]\nca = "ca.pem"\ncert = "c.pem"\nkey = "k.pem"\n'
    (tmp_path / "plain.toml").write_text(base)
    (tmp_path / "update.toml").write_text(base + '[update]\ndevice_type = "pump"\ninstaller = "ab"\nslots = "app"\n')

    plain = loaded(tmp_path / "plain.toml", tmp_path / "state.lmdb")
    assert plain == {"idle": [], "started": []}

    updating = loaded(tmp_path / "update.toml", tmp_path / "state.lmdb")
    assert updating["idle"] == []
    assert "edge.updates.handler" in updating["started"] and "edge.updates.installers.ab" in updating["started"]
    assert not [
        m for m in updating["started"] if m.startswith(("tuf", "securesystemslib", "edge.updates.installers.hooks"))
    ]
