"""`mahavishnu agent run`: one agent from its agent.toml, or N simulated devices in one process.

`run_agent` is what a device runs: it imports the edge package, core's light modules and
the standard library only (on a control host as on a device); `run_simulated` enrols
devices, so it loads the control plane, inside the function.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from pathlib import Path
from typing import TYPE_CHECKING

from core.logs import configure_logging
from edge import AgentConfig, load_agent_config
from edge.agent import Agent

if TYPE_CHECKING:
    from core.config import Settings
    from mahavishnu.runtime.home import Home


async def run_agent(config: Path) -> int:
    """Run the agent of `config` (agent.toml) until SIGTERM/SIGINT; 0 on a clean stop."""
    return await run_agents([config])


async def run_agents(configs: list[Path] | list[str]) -> int:
    """Run one agent per agent.toml in this process until SIGTERM/SIGINT (benchmarks spread a fleet over a few)."""
    _logging()
    return await _run([load_agent_config(Path(config)) for config in configs])


async def run_simulated(home: Home, settings: Settings, count: int) -> int:
    """Enrol sim-0..sim-(count-1) where needed and run them all in this process until SIGTERM/SIGINT."""
    _logging()
    configs = [load_agent_config(path) for path in await _simulated_devices(home, settings, count)]
    return await _run(configs, simulated=True)


def _logging() -> None:
    configure_logging(level=os.environ.get("MAHAVISHNU_LOGGING__LEVEL", "info"), fmt="json")


# Agents of one process start this far apart. Devices of a fleet each have their own CPU;
# agents sharing one process do not: 500 TLS handshakes begun in the same instant take this
# host seconds of CPU before the first completes, and the server's TLS timeout (5 s) refuses
# the rest, which then all retry. Spread, they connect in about as many seconds.
START_SPACING_S = 0.01


async def _run(configs: list[AgentConfig], *, simulated: bool = False) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if simulated:  # they also answer simulate.work (failures injected on a share of them); real ones never do
        from edge.simulate import simulated_registry

        agents = [Agent(c, registry=simulated_registry(exec_allowlist=c.exec_allowlist)) for c in configs]
    else:
        agents = [Agent(config) for config in configs]
    await asyncio.gather(*(_started_after(i * START_SPACING_S, agent, stop) for i, agent in enumerate(agents)))
    return 0


async def _started_after(delay: float, agent: Agent, stop: asyncio.Event) -> None:
    if delay:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), delay)  # a stop meanwhile ends it before it starts
    if not stop.is_set():
        await agent.run(stop)


async def _simulated_devices(home: Home, settings: Settings, count: int) -> list[Path]:
    """Enrol sim-0..sim-(count-1) once (the mesh must be up), and return their agent.toml files."""
    from core.store import EventStore, connect
    from mahavishnu.control import devices

    wanted = {f"sim-{i}": home.root / "devices" / f"sim-{i}" / "agent.toml" for i in range(count)}
    missing = [device for device, path in wanted.items() if not path.is_file()]
    if missing:
        home.check_ready()
        store = EventStore(await connect(home.control_identity(settings), name="simulator", reconnect=False))
        try:
            for device in missing:
                await devices.enroll(home, settings, store, device, out_dir=wanted[device].parent)
        finally:
            await store.nc.close()
    return list(wanted.values())
