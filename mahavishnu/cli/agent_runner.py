"""`mahavishnu agent run`: one agent from its agent.toml, or N simulated devices in one process."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

from core.logs import configure_logging
from edge import AgentConfig, load_agent_config
from edge.agent import Agent


def run_agents(home: Path, *, config: Path | None, simulate: int | None) -> int:
    """Run until SIGTERM/SIGINT; 0 on a clean stop."""
    configure_logging(level=os.environ.get("MAHAVISHNU_LOGGING__LEVEL", "info"), fmt="json")
    if config is not None:
        configs = [load_agent_config(config)]
    else:
        assert simulate is not None
        configs = [load_agent_config(path) for path in _simulated_devices(home, simulate)]
    return asyncio.run(_run(configs))


async def _run(configs: list[AgentConfig]) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    agents = [Agent(config) for config in configs]
    await asyncio.gather(*(agent.run(stop) for agent in agents))
    return 0


def _simulated_devices(home: Path, count: int) -> list[Path]:
    """Enrol sim-0..sim-(count-1) once (the mesh must be up), and return their agent.toml files."""
    from core.config import settings_for
    from core.store import EventStore, connect
    from mahavishnu.control import devices
    from mahavishnu.runtime.home import Home

    mesh = Home(home)
    settings = settings_for(home, os.environ)
    wanted = {f"sim-{i}": home / "devices" / f"sim-{i}" / "agent.toml" for i in range(count)}
    missing = [device for device, path in wanted.items() if not path.is_file()]

    async def enrol() -> None:
        store = EventStore(await connect(mesh.control_identity(settings), name="simulator", reconnect=False))
        try:
            for device in missing:
                await devices.enroll(mesh, settings, store, device, out_dir=wanted[device].parent)
        finally:
            await store.nc.close()

    if missing:
        mesh.check_ready()
        asyncio.run(enrol())
    return list(wanted.values())
