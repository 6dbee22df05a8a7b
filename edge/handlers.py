"""The plugin interface of the edge agent: handlers, their context, and the registry.

A handler is any object with these members (structural typing, no base class needed):

- `name: str`: the command name operators use (`mahavishnu cmd <device> <name>`);
- `timeout_s: float`: the longest the handler may run; the command's own `timeout_s`
  can only shorten it (the smaller of the two wins);
- `validate(args) -> None`: checks the arguments before anything runs, raising
  `InvalidArguments(reason)`; the command is then rejected (CommandRejected), never run;
- `async run(args, context) -> Any`: does the work and returns a JSON-able result
  (CommandSucceeded), or raises `CommandError(message)` (CommandFailed). When the
  timeout passes, the task running `run` is cancelled: release what you hold in
  `finally` (the `exec` handler kills its process there). Any other exception is
  reported as a one-line CommandFailed, never as a traceback;
- optionally `recovered(command_id) -> Any`: for a command this handler was running when
  the agent died, its outcome as `run` would have given it (a result, or a CommandError),
  or None; the agent reports that instead of "interrupted" (update.install: the rollback
  its start did);
- optionally `rerunnable: bool` (default False): True for a command that changes nothing
  on the device (ping, echo, info, config.get), so that running it again after a crash
  has the effect of running it once. The agent then records it once, when it ends (one
  fsync, not two), and a command the agent died running is run again after its
  redelivery instead of being reported interrupted.

An example plugin, registered with `registry.register(Greet())`:

    @dataclass(frozen=True)
    class Greet:
        name: str = "greet"
        timeout_s: float = 5.0

        def validate(self, args: dict[str, Any]) -> None:
            if not isinstance(args.get("who"), str):
                raise InvalidArguments("greet needs 'who', a string, e.g. {'who': 'world'}")

        async def run(self, args: dict[str, Any], context: HandlerContext) -> Any:
            return {"greeting": f"hello {args['who']} from {context.device_id}"}
"""

from __future__ import annotations

from typing import Any, Protocol

import msgspec

from edge.errors import DuplicateHandler, UnknownCommand


class ConfigStore(Protocol):
    """Where `config.get`/`config.set` keep their values; `edge.state.AgentState` is the real one."""

    def config_get(self, key: str) -> Any:
        """The value stored under `key`; KeyError when there is none."""

    def config_items(self) -> dict[str, Any]:
        """Every stored value by key."""

    def config_set(self, key: str, value: Any) -> None:
        """Store a JSON-able value under `key`, durably."""


class HandlerContext(msgspec.Struct, frozen=True, kw_only=True):
    """What a running handler may use: the device's id, its durable config values, and for
    handlers that keep a record of their own work (update.install) the command's id and
    the agent's NATS connection (None in tests without one, or between connections)."""

    device_id: str
    config: ConfigStore
    command_id: str = ""
    connection: Any = None


def is_rerunnable(handler: object) -> bool:
    """Whether running `handler` again after a crash has the effect of running it once (see the module docstring)."""
    return getattr(handler, "rerunnable", False) is True


class Handler(Protocol):
    """A command the device knows how to run; see the module docstring."""

    @property
    def name(self) -> str: ...

    @property
    def timeout_s(self) -> float: ...

    def validate(self, args: dict[str, Any]) -> None: ...

    async def run(self, args: dict[str, Any], context: HandlerContext) -> Any: ...


class Registry:
    """Handlers by name; a name is taken once (DuplicateHandler on a second registration)."""

    def __init__(self, handlers: list[Handler] | None = None) -> None:
        self._handlers: dict[str, Handler] = {}
        for handler in handlers or []:
            self.register(handler)

    def register(self, handler: Handler) -> None:
        """Add `handler` under its name; DuplicateHandler when the name is taken."""
        if handler.name in self._handlers:
            raise DuplicateHandler(handler.name)
        self._handlers[handler.name] = handler

    def get(self, name: str) -> Handler:
        """The handler called `name`; UnknownCommand (naming the known ones) otherwise."""
        try:
            return self._handlers[name]
        except KeyError:
            raise UnknownCommand(name, self.names()) from None

    def names(self) -> list[str]:
        """The registered names, sorted."""
        return sorted(self._handlers)

    def __contains__(self, name: object) -> bool:
        return name in self._handlers

    def __len__(self) -> int:
        return len(self._handlers)
