"""The orchestrator alone in a process of its own: `python -m mahavishnu.campaigns.standalone HOME PORT`.

What the crash test kills with SIGKILL and starts again (in `up` the orchestrator is one of
its services, in up's process). It connects as the control identity of the state
directory HOME to the mesh's server on PORT, and runs until SIGTERM or SIGINT.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

from core.config import load_config
from core.logs import configure_logging
from core.store import EventStore, connect
from mahavishnu.campaigns.orchestrator import Orchestrator
from mahavishnu.runtime.home import Home


async def main(root: Path, port: int) -> int:
    configure_logging(level="info", fmt="json")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    home = Home(root)
    nc = await connect(home.control_identity(load_config(None, env={}), port), name="campaigns")
    try:
        await Orchestrator(EventStore(nc)).run(stop)
    finally:
        await nc.close()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(Path(sys.argv[1]), int(sys.argv[2]))))
