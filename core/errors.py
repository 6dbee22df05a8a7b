"""The errors Mahavishnu raises on purpose.

Every message is one line that says what is wrong and what to do; the CLI prints it
as `error: <message>` and exits non-zero, without a traceback.

    MahavishnuError
    ├── ConfigError              a configuration file or variable is wrong
    └── StoreError               the event store could not do what was asked
        ├── StoreUnavailable     no server answered (down, unreachable, no JetStream)
        ├── ConcurrencyConflict  an expected last subject sequence did not match
        ├── AppendFailed         the server refused or did not acknowledge an append
        └── StreamConfigError    a stream could not be created or updated

Lower libraries' errors (nats-py) are translated into these in one place,
`core.store.nats_errors`, with `raise ... from exc` so the cause stays in the chain.
"""

from __future__ import annotations


class MahavishnuError(Exception):
    """Base of every error Mahavishnu raises on purpose; str(e) is one line saying what is wrong and what to do."""


class ConfigError(MahavishnuError):
    """One or more configuration values are wrong; `.problems` has one message per wrong field."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(self.problems))


class StoreError(MahavishnuError):
    """The event store could not complete an operation."""


class StoreUnavailable(StoreError):
    """No NATS server with JetStream answered in time."""


class ConcurrencyConflict(StoreError):
    """An append expected a different last sequence on its subject: someone wrote first.

    Reload the aggregate's events and decide again.
    """

    def __init__(self, subject: str, expected: int, message: str = "") -> None:
        self.subject = subject
        self.expected = expected
        detail = f": {message}" if message else ""
        super().__init__(
            f"concurrency conflict on {subject}: expected last sequence {expected}{detail}; "
            "reload the events of this subject and retry"
        )


class AppendFailed(StoreError):
    """The server refused an append or did not acknowledge it in time; nothing may be assumed stored."""


class StreamConfigError(StoreError):
    """A stream definition could not be applied to the server."""
