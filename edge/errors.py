"""The errors the edge agent raises on purpose; their place in the whole tree is drawn in core.errors.

Every message is one line that says what is wrong and what to do. A handler (a plugin)
raises InvalidArguments to reject a command before it runs, CommandError when it ran and
failed; both messages reach the operator as they are, so keep them one safe line.

The state file's `lmdb` and OS errors become StateError in one place, `edge.state._translate`,
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


class DuplicateHandler(EdgeError):
    """A handler was registered under a name that is already taken."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"a handler named {name!r} is already registered; give the new handler another name")


class UnknownCommand(EdgeError):
    """No registered handler has the command's name."""

    def __init__(self, name: str, known: list[str]) -> None:
        self.name = name
        self.known = list(known)
        super().__init__(f"this device has no command {name!r}; it knows {', '.join(self.known) or 'no commands'}")


class InvalidArguments(EdgeError):
    """Raised by a handler: a command's arguments are wrong; `.reason` says which and how to fix them.

    The command is rejected, never run, and the reason sent to the operator as it is.
    """

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class CommandError(EdgeError):
    """Raised by a handler: the command ran and failed; `.message` becomes the CommandFailed event's `error`."""

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)


class StateError(EdgeError):
    """The agent's state file (ledger, outbox, config values) could not be read or written."""
