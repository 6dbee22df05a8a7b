"""An update run in a process of its own, to be killed with -9 mid-way (test_kill.py).

    python -m tests.edge.updates.pipeline_process STATE SLOTS ARTIFACT VERSION MARKER

It installs ARTIFACT as app VERSION into the A/B SLOTS with the real pipeline and
installer, and once the install has unpacked (before install returns, so before any
switch) touches MARKER and waits to be killed: "kill -9 during install".
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from edge.state import AgentState
from edge.updates.installers import Prepared, Update
from edge.updates.installers.ab import ABInstaller
from edge.updates.record import Records
from tests.edge.updates.kit import LocalSteps, update


class KilledDuringInstall(ABInstaller):
    def __init__(self, root: Path, marker: Path) -> None:
        super().__init__(root)
        self.marker = marker

    async def install(self, artifact: Path, update: Update) -> Prepared:
        await super().install(artifact, update)
        self.marker.touch()
        await asyncio.Event().wait()  # until the test kills this process
        raise AssertionError("not reached")


async def main(state_path: str, slots: str, artifact: str, version: str, marker: str) -> None:
    with AgentState(Path(state_path)) as state:
        installer = KilledDuringInstall(Path(slots), Path(marker))
        steps = LocalSteps({version: Path(artifact)})
        await update(Records(state), installer, steps, version, work=Path(state_path).parent, command_id="c-killed")


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:]))
