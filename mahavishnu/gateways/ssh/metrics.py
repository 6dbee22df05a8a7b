"""What the SSH gateway did, on up's /metrics (a metric group, as core.metrics' are).

    mahavishnu_ssh_connections_total{outcome}  connection attempts: opened | host_key_refused |
                                               auth_failed | failed (unreachable, no SSH in time,
                                               unreadable credentials)
    mahavishnu_ssh_connections_open            connections open now, idle or running a command
    mahavishnu_ssh_commands_total{outcome}     commands the gateway ended, by their terminal state
                                               (core.commands: succeeded, failed, timed_out, rejected, ...)

A host-key refusal (the host presented another key than the pinned one) is
`outcome="host_key_refused"`: the one to alert on, since it is a changed host or a
machine in the middle.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge

from mahavishnu.gateways.ssh.errors import HostKeyMismatch, SshAuthFailed

CONNECTION_OUTCOMES = ("opened", "host_key_refused", "auth_failed", "failed")


def connection_outcome(error: BaseException | None) -> str:
    """The outcome label of one connection attempt that opened (None) or failed with `error` (pure)."""
    if error is None:
        return "opened"
    if isinstance(error, HostKeyMismatch):
        return "host_key_refused"
    if isinstance(error, SshAuthFailed):
        return "auth_failed"
    return "failed"


class SshMetrics:
    """The gateway's metric group; `open_connections` is read at each scrape (the pool's own count)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.connections = Counter(
            "mahavishnu_ssh_connections",
            "SSH connection attempts of the gateway, by outcome (host_key_refused: not the pinned key).",
            ["outcome"],
            registry=registry,
        )
        for outcome in CONNECTION_OUTCOMES:  # every outcome exported from the start, so a rate() sees its first
            self.connections.labels(outcome)
        self.open = Gauge(
            "mahavishnu_ssh_connections_open", "SSH connections the gateway holds open now.", registry=registry
        )
        self.commands = Counter(
            "mahavishnu_ssh_commands",
            "Commands the SSH gateway ended, by terminal state.",
            ["outcome"],
            registry=registry,
        )

    def count_open(self, open_connections: Callable[[], int]) -> None:
        """Read the number of open connections from `open_connections` at each scrape."""
        self.open.set_function(open_connections)
