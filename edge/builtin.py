"""The handlers every agent has: ping, info, echo, sleep, config.get, config.set, config.apply, exec.

Standard library only, so they run on any device. `exec` lives in `edge.exec_handler`;
`default_registry` puts them all together.
"""

from __future__ import annotations

import asyncio
import math
import os
import platform
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from edge.errors import CommandError, InvalidArguments
from edge.exec_handler import Exec
from edge.handlers import HandlerContext, Registry

MAX_SLEEP_S = 3600.0
MAX_KEY_LENGTH = 128


def default_registry(*, exec_allowlist: Iterable[str] = ()) -> Registry:
    """A registry with every built-in handler; `exec` runs only the exact command lines given."""
    return Registry(
        [
            Ping(),
            Info(),
            Echo(),
            Sleep(),
            ConfigGet(),
            ConfigSet(),
            ConfigApply(),
            Exec(allowlist=frozenset(exec_allowlist)),
        ]
    )


# -- Argument checks ------------------------------------------------------------------


def only(command: str, args: dict[str, Any], allowed: Iterable[str]) -> None:
    """InvalidArguments when `args` has a key outside `allowed` (a typo would otherwise pass silently)."""
    names = sorted(allowed)
    extra = sorted(set(args) - set(names))
    if extra:
        takes = f"it takes {', '.join(map(repr, names))}" if names else "it takes no arguments"
        raise InvalidArguments(f"{command} does not take {', '.join(map(repr, extra))}; {takes}")


def is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def is_json(value: object, depth: int = 0) -> bool:
    """Whether `value` is made only of JSON types (str, finite numbers, bool, None, lists, str-keyed dicts)."""
    if depth > 64:
        return False
    if value is None or isinstance(value, str | bool) or is_number(value):
        return True
    if isinstance(value, list):
        return all(is_json(item, depth + 1) for item in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and is_json(v, depth + 1) for k, v in value.items())
    return False


def _key(command: str, args: dict[str, Any], *, required: bool) -> None:
    if "key" not in args and not required:
        return
    key = args.get("key")
    if not isinstance(key, str) or not 1 <= len(key) <= MAX_KEY_LENGTH:
        raise InvalidArguments(f"{command} needs 'key', a string of 1 to {MAX_KEY_LENGTH} characters")


# -- The handlers -------------------------------------------------------------------------


@dataclass(frozen=True)
class Ping:
    """Answers {"pong": true, "time": <ISO 8601 UTC>}: the device is there and its clock says when."""

    name: str = "ping"
    timeout_s: float = 5.0
    rerunnable: bool = True  # changes nothing: edge.handlers

    def validate(self, args: dict[str, Any]) -> None:
        only(self.name, args, ())

    async def run(self, args: dict[str, Any], context: HandlerContext) -> Any:
        return {"pong": True, "time": datetime.now(UTC).isoformat()}


@dataclass(frozen=True)
class Echo:
    """Answers its arguments unchanged."""

    name: str = "echo"
    timeout_s: float = 5.0
    rerunnable: bool = True  # changes nothing: edge.handlers

    def validate(self, args: dict[str, Any]) -> None:
        if not is_json(args):
            raise InvalidArguments("echo takes only JSON values (strings, numbers, booleans, null, lists, objects)")

    async def run(self, args: dict[str, Any], context: HandlerContext) -> Any:
        return dict(args)


@dataclass(frozen=True)
class Sleep:
    """Waits `seconds` (0 to 3600), then answers {"slept": seconds}."""

    name: str = "sleep"
    timeout_s: float = MAX_SLEEP_S + 60.0

    def validate(self, args: dict[str, Any]) -> None:
        only(self.name, args, ("seconds",))
        seconds = args.get("seconds")
        if not isinstance(seconds, int | float) or not is_number(seconds) or not 0 <= seconds <= MAX_SLEEP_S:
            raise InvalidArguments(f"sleep needs 'seconds', a number from 0 to {MAX_SLEEP_S:g}")

    async def run(self, args: dict[str, Any], context: HandlerContext) -> Any:
        await asyncio.sleep(args["seconds"])
        return {"slept": args["seconds"]}


@dataclass(frozen=True)
class ConfigGet:
    """Answers the config value stored under `key`, or every value by key when no key is given."""

    name: str = "config.get"
    timeout_s: float = 5.0
    rerunnable: bool = True  # changes nothing: edge.handlers

    def validate(self, args: dict[str, Any]) -> None:
        only(self.name, args, ("key",))
        _key(self.name, args, required=False)

    async def run(self, args: dict[str, Any], context: HandlerContext) -> Any:
        if "key" not in args:
            return context.config.config_items()
        try:
            return context.config.config_get(args["key"])
        except KeyError:
            raise CommandError(f"no config value {args['key']!r} on this device; set one with config.set") from None


@dataclass(frozen=True)
class ConfigSet:
    """Stores `value` (any JSON value) under `key`, durably; answers {"key": key, "value": value}."""

    name: str = "config.set"
    timeout_s: float = 5.0

    def validate(self, args: dict[str, Any]) -> None:
        only(self.name, args, ("key", "value"))
        _key(self.name, args, required=True)
        if "value" not in args or not is_json(args["value"]):
            raise InvalidArguments("config.set needs 'value': a JSON string, number, boolean, null, list or object")

    async def run(self, args: dict[str, Any], context: HandlerContext) -> Any:
        context.config.config_set(args["key"], args["value"])
        return {"key": args["key"], "value": args["value"]}


# The commands that change the device's configuration: the agent reports its shadow after each.
CONFIG_WRITES = frozenset({"config.set", "config.apply"})


@dataclass(frozen=True)
class ConfigApply:
    """Stores every key of `values` at once, durably: a desired state in one command (a campaign's execution
    is one command per device); answers {"values": values}."""

    name: str = "config.apply"
    timeout_s: float = 5.0

    def validate(self, args: dict[str, Any]) -> None:
        only(self.name, args, ("values",))
        values = args.get("values")
        if not isinstance(values, dict) or not values or not is_json(values):
            raise InvalidArguments("config.apply needs 'values': a non-empty object of keys and JSON values")
        for key in values:
            _key(self.name, {"key": key}, required=True)

    async def run(self, args: dict[str, Any], context: HandlerContext) -> Any:
        for key, value in args["values"].items():
            context.config.config_set(key, value)
        return {"values": args["values"]}


@dataclass(frozen=True)
class Info:
    """Answers what the device is: OS, CPU, load, memory, disk of "/", uptime (None where unknown)."""

    name: str = "info"
    timeout_s: float = 10.0
    rerunnable: bool = True  # changes nothing: edge.handlers
    proc: Path = Path("/proc")
    disk: str = "/"

    def validate(self, args: dict[str, Any]) -> None:
        only(self.name, args, ())

    async def run(self, args: dict[str, Any], context: HandlerContext) -> Any:
        return system_info(self.proc, self.disk)


def system_info(proc: Path = Path("/proc"), disk: str = "/") -> dict[str, Any]:
    """What `info` answers; reads a few small files, so it is cheap enough to call on the event loop."""
    meminfo = _read(proc / "meminfo")
    uptime = _read(proc / "uptime")
    return {
        "os": platform.system(),
        "release": platform.release(),
        "machine": platform.machine(),
        "hostname": platform.node(),
        "cpu_count": os.cpu_count(),
        "load_average": _load_average(),
        "memory": parse_meminfo(meminfo) if meminfo is not None else None,
        "disk": _disk(disk),
        "uptime_s": parse_uptime(uptime) if uptime is not None else None,
    }


def parse_meminfo(text: str) -> dict[str, int] | None:
    """{"total_bytes", "available_bytes"} from the text of /proc/meminfo; None when they are not there."""
    values: dict[str, int] = {}
    for line in text.splitlines():
        label, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            values[label.strip()] = int(parts[0]) * (1024 if parts[1:2] == ["kB"] else 1)
    if "MemTotal" not in values:
        return None
    available = values.get("MemAvailable", values.get("MemFree"))
    return {"total_bytes": values["MemTotal"], "available_bytes": available} if available is not None else None


def parse_uptime(text: str) -> float | None:
    """Seconds since boot from the text of /proc/uptime ("12345.67 54321.00"); None when unreadable."""
    try:
        return float(text.split()[0])
    except (IndexError, ValueError):
        return None


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def _load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (OSError, AttributeError):  # not available on this platform
        return None


def _disk(path: str) -> dict[str, Any] | None:
    try:
        usage = shutil.disk_usage(path)
    except OSError:
        return None
    return {"path": path, "total_bytes": usage.total, "free_bytes": usage.free}
