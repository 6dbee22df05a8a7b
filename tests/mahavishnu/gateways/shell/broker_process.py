"""A shell broker in a process of its own, for the test that kills it as a crash of `up` would.

    python -m tests.mahavishnu.gateways.shell.broker_process HOME PORT JOURNAL

It serves the test mesh in HOME (its server on PORT) as `up`'s broker does, with the
journal at JOURNAL and the limits of test_broker.RELAXED, prints "ready" once it answers,
and runs until it is killed.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from core.config import load_config
from core.store import EventStore, connect
from mahavishnu.control import operators
from mahavishnu.gateways.shell.broker import start_shell_broker
from mahavishnu.gateways.shell.journal import SessionJournal
from mahavishnu.gateways.shell.session import Limits
from mahavishnu.runtime.home import Home

LIMITS = Limits(idle_s=60, max_s=120, owner_silence_s=30)


async def serve(home: Home, port: int, journal: Path) -> None:
    settings = load_config(None, env={})
    nc = await connect(home.control_identity(settings, port), name="crashing-broker", reconnect=False)
    system = await connect(home.system_identity(settings, port), name="crashing-broker-system", reconnect=False)
    await start_shell_broker(
        nc,
        resolve=operators.resolver(home),
        audit=EventStore(nc).audit,
        limits=LIMITS,
        system=system,
        journal=SessionJournal(journal),
    )
    print("ready", flush=True)
    await asyncio.Event().wait()  # until killed: no clean stop, that is the point


if __name__ == "__main__":
    asyncio.run(serve(Home(Path(sys.argv[1])), int(sys.argv[2]), Path(sys.argv[3])))
