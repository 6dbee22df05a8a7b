"""A real agent process (edge.agent.Agent from an agent.toml with [update]) whose update.install
verifies and downloads from local files: the mesh's two steps are the other parts of issue 18.

    python -m tests.edge.updates.agent_process AGENT_TOML FILES_JSON      # {"version": "path/to/artifact.tar.gz"}

Stops on SIGTERM, like `mahavishnu agent run`; test_kill.py kills it with -9 instead.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import sys
from pathlib import Path
from typing import Any

from edge import load_agent_config
from edge.agent import Agent
from edge.updates.handler import InstallHandler
from tests.edge.updates.kit import LocalSteps


async def main(config: str, files: str) -> None:
    local = LocalSteps({version: Path(path) for version, path in json.loads(files).items()})

    def steps(self: InstallHandler, connection: Any) -> Any:
        return local.verify, local.download

    InstallHandler.steps = steps  # type: ignore[method-assign]
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await Agent(load_agent_config(config)).run(stop)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    asyncio.run(main(*sys.argv[1:]))
