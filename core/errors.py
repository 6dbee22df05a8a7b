"""The errors Mahavishnu raises on purpose.

Every message is one line that says what is wrong and what to do; the CLI prints it
as `error: <message>` and exits non-zero, without a traceback.

    MahavishnuError
    ├── ConfigError              a configuration file or variable is wrong
    ├── StoreError               the event store could not do what was asked
    │   ├── StoreUnavailable     no server answered (down, unreachable, no JetStream)
    │   ├── ConcurrencyConflict  an expected last subject sequence did not match
    │   ├── AppendFailed         the server refused or did not acknowledge an append
    │   └── StreamConfigError    a stream could not be created or updated
    └── ServiceRefusal           a request refused with an HTTP-like code (also nats micro's ServiceError)
        └── NoAnswer             the service or device asked did not answer (503, 504)

Lower libraries' errors (nats-py) are translated into these in one place,
`core.store.nats_errors`, with `raise ... from exc` so the cause stays in the chain.
"""

from __future__ import annotations

from nats.micro.request import ServiceError


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


class ServiceRefusal(MahavishnuError, ServiceError):
    """A request refused with an HTTP-like `status` (404, 503, ...); `.code` and `.description` are micro's.

    Also a nats micro ServiceError: a micro endpoint handler that raises it is answered by
    micro itself with the `Nats-Service-Error-Code` and `Nats-Service-Error` headers, which
    `nats req` shows. ServiceError is a dataclass whose `__init__` takes (code, description)
    and leaves the exception's args empty, and whose `__eq__` compares by value, which
    makes it unhashable: this class sets all three up as an exception's.
    """

    def __init__(self, status: int, description: str) -> None:
        Exception.__init__(self, description)  # str(e) is the description, as for every MahavishnuError
        self.status = status
        self.code = str(status)
        self.description = description

    __eq__ = Exception.__eq__
    __hash__ = Exception.__hash__

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.status}, {self.description!r})"


class NoAnswer(ServiceRefusal):
    """A request to one of our services or to a device got no answer: 503 when nobody listens or our
    connection is gone, 504 when the answer did not come in time. See core.store.nats_errors.unanswered."""
