"""`simulate.work`: the handler of simulated devices only (`agent run --simulate N`, tests, benchmarks).

It waits `seconds`, then fails on a fixed share of the devices: those whose id hashes
below `fail_pct` percent. The share is deterministic (a hash, not a random draw), so a test
or a benchmark knows which devices will fail and a retry fails again, as a device whose
update does not take would. A real agent never registers it (mahavishnu.cli.agent_runner
adds it to simulated agents only).
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass
from typing import Any

from edge.builtin import MAX_SLEEP_S, default_registry, is_number, only
from edge.errors import CommandError, InvalidArguments
from edge.handlers import HandlerContext, Registry


def fails(device_id: str, fail_pct: float) -> bool:
    """Whether `device_id` is among the `fail_pct` percent of devices that fail (pure, stable across runs)."""
    bucket = int.from_bytes(hashlib.sha256(device_id.encode()).digest()[:8], "big") % 10_000
    return bucket < fail_pct * 100


@dataclass(frozen=True)
class SimulateWork:
    """Waits `seconds` (default 0), then fails if the device is in the `fail_pct` share; answers {"worked": seconds}."""

    name: str = "simulate.work"
    timeout_s: float = MAX_SLEEP_S + 60.0

    def validate(self, args: dict[str, Any]) -> None:
        only(self.name, args, ("fail_pct", "seconds"))
        fail_pct, seconds = args.get("fail_pct", 0), args.get("seconds", 0)
        if not is_number(fail_pct) or not 0 <= fail_pct <= 100:
            raise InvalidArguments("simulate.work takes 'fail_pct', a number from 0 to 100")
        if not is_number(seconds) or not 0 <= seconds <= MAX_SLEEP_S:
            raise InvalidArguments(f"simulate.work takes 'seconds', a number from 0 to {MAX_SLEEP_S:g}")

    async def run(self, args: dict[str, Any], context: HandlerContext) -> Any:
        seconds = args.get("seconds", 0)
        if seconds:
            await asyncio.sleep(seconds)
        if fails(context.device_id, args.get("fail_pct", 0)):
            raise CommandError(f"simulated failure ({args.get('fail_pct', 0)}% of devices fail)")
        return {"worked": seconds}


def simulated_registry(*, exec_allowlist: tuple[str, ...] = ()) -> Registry:
    """Every built-in handler, and simulate.work."""
    registry = default_registry(exec_allowlist=exec_allowlist)
    registry.register(SimulateWork())
    return registry
