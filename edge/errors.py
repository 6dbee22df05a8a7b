"""The errors the edge agent raises on purpose.

Every message is one line that says what is wrong and what to do.

    MahavishnuError (core.errors)
    └── EdgeError
        ├── AgentConfigError     agent.toml is wrong (also a core ConfigError); `.problems`, one per field
        ├── RegistryError        the handler registry was used wrongly
        │   ├── DuplicateHandler a second handler tried to take a name already registered
        │   └── UnknownCommand   no handler has the name a command asked for
        ├── HandlerError         raised by handlers (plugins) while checking or running a command
        │   ├── InvalidArguments a command's arguments are wrong: the command is rejected, never run
        │   └── CommandError     the command ran and failed: reported as CommandFailed(error)
        └── StateError           the agent's SQLite state file could not do what was asked

`sqlite3` errors are translated into StateError in one place, `edge.state._translate`,
with `raise ... from exc` so the cause stays in the chain.
"""

from __future__ import annotations

from pathlib import Path

from core.errors import ConfigError, MahavishnuError


class EdgeError(MahavishnuError):
    """Base of every error the edge agent raises on purpose."""


class AgentConfigError(EdgeError, ConfigError):
    """agent.toml has one or more wrong values; `.problems` has one message per wrong field, `.path` the file."""

    def __init__(self, path: Path | str, problems: list[str]) -> None:
        self.path = str(path)
        self.problems = list(problems)
        Exception.__init__(self, f"{self.path}: " + "; ".join(self.problems))


class RegistryError(EdgeError):
    """The handler registry was asked for something it cannot do."""


class DuplicateHandler(RegistryError):
    """A handler was registered under a name that is already taken."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"a handler named {name!r} is already registered; give the new handler another name")


class UnknownCommand(RegistryError):
    """No registered handler has the command's name."""

    def __init__(self, name: str, known: list[str]) -> None:
        self.name = name
        self.known = list(known)
        super().__init__(f"this device has no command {name!r}; it knows {', '.join(self.known) or 'no commands'}")


class HandlerError(EdgeError):
    """Raised by a handler; the message is sent to the operator as it is, so keep it one safe line."""


class InvalidArguments(HandlerError):
    """A command's arguments are wrong; `.reason` says which and how to fix them. The command is rejected."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class CommandError(HandlerError):
    """A command ran and failed; `.message` becomes the CommandFailed event's `error`."""

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)


class StateError(EdgeError):
    """The agent's state file (ledger, outbox, config values) could not be read or written."""
