"""Prometheus metrics shared by the services: one registry per process, small metric groups.

Each service builds one registry with `new_registry()`, hands it to the metric groups
it uses and to `core.probes.ProbeServer`, which serves it on /metrics. A registry per
process (never prometheus-client's global one) keeps tests independent and lets two
services share a process without their names clashing.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager, suppress
from typing import Final

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    gc_collector,
    platform_collector,
    process_collector,
)

from core.updates.states import COMPLIANCE

__all__ = [
    "APPEND_BUCKETS",
    "FRESHNESS_OBJECTIVE_S",
    "CampaignMetrics",
    "CodeIndexMetrics",
    "CommandMetrics",
    "EventStoreMetrics",
    "ProjectionMetrics",
    "new_registry",
]

# Seconds; a local JetStream append acknowledges in about a millisecond, a replicated
# one over a WAN link in tens of milliseconds.
APPEND_BUCKETS: Final = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

# The index-freshness SLO counts commits queryable within 5 minutes of being seen, so
# 300 s must be a bucket boundary of the freshness histogram.
FRESHNESS_OBJECTIVE_S: Final = 300.0

# Seconds from a command's issue to its end: an agent that is online answers in well under
# a second; one that was offline answers when it comes back, minutes or hours later.
COMMAND_BUCKETS: Final = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0)


def new_registry(*, process_metrics: bool = True) -> CollectorRegistry:
    """Return a fresh registry, with the process, platform and GC collectors unless told not to."""
    registry = CollectorRegistry(auto_describe=True)
    if process_metrics:
        process_collector.ProcessCollector(registry=registry)
        platform_collector.PlatformCollector(registry=registry)
        gc_collector.GCCollector(registry=registry)
    return registry


class EventStoreMetrics:
    """Appends to the event store, per stream.

    mahavishnu_events_appended_total{stream}             events acknowledged by JetStream
    mahavishnu_events_append_failed_total{stream,reason} appends that failed; reason is the
                                                         error class name (a small, fixed set)
    mahavishnu_append_seconds{stream}                    append latency, acknowledged or not

    Raises ValueError (from prometheus-client) if the registry already holds these names.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.appended = Counter(
            "mahavishnu_events_appended_total",
            "Events appended to the event store and acknowledged by JetStream.",
            ["stream"],
            registry=registry,
        )
        self.append_failed = Counter(
            "mahavishnu_events_append_failed_total",
            "Appends to the event store that failed, by error class.",
            ["stream", "reason"],
            registry=registry,
        )
        self.append_seconds = Histogram(
            "mahavishnu_append_seconds",
            "Time from sending an append to its acknowledgement or failure.",
            ["stream"],
            buckets=APPEND_BUCKETS,
            registry=registry,
        )

    @contextmanager
    def time_append(
        self, stream: str, events: int = 1, *, answers: tuple[type[BaseException], ...] = ()
    ) -> Iterator[None]:
        """Time the append of `events` inside the block and count them as appended, or failed if it raises.

        The exception is re-raised unchanged; its class name becomes the `reason` label.
        `answers` are exceptions that are the store's answer rather than a failure (a
        concurrency conflict: the caller's expectation was stale); they count as neither.
        """
        start = time.perf_counter()
        try:
            yield
        except answers:
            raise
        except BaseException as exc:
            self.append_failed.labels(stream=stream, reason=type(exc).__name__).inc(events)
            raise
        else:
            self.appended.labels(stream=stream).inc(events)
        finally:
            self.append_seconds.labels(stream=stream).observe(time.perf_counter() - start)


class ProjectionMetrics:
    """The read models, per projection.

    mahavishnu_projection_applied_total{projection}         events applied (parked ones included)
    mahavishnu_projection_position{projection,source}       the last stream sequence applied
    mahavishnu_projection_lag_events{projection}            events on its subjects not applied yet
    mahavishnu_projection_lag_seconds{projection}           age of the oldest of them (0 when caught up)
    mahavishnu_projection_parked{projection}                events it could not apply
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.applied = Counter(
            "mahavishnu_projection_applied_total", "Events applied to a read model.", ["projection"], registry=registry
        )
        self.position = Gauge(
            "mahavishnu_projection_position",
            "The last stream sequence a read model applied, per source.",
            ["projection", "source"],
            registry=registry,
        )
        self.lag_events = Gauge(
            "mahavishnu_projection_lag_events",
            "Events on a read model's subjects that it has not applied yet.",
            ["projection"],
            registry=registry,
        )
        self.lag_seconds = Gauge(
            "mahavishnu_projection_lag_seconds",
            "Age of the oldest event a read model has not applied yet (0 when caught up).",
            ["projection"],
            registry=registry,
        )
        self.parked = Gauge(
            "mahavishnu_projection_parked", "Events a read model parked.", ["projection"], registry=registry
        )


class CodeIndexMetrics:
    """Polling and indexing of repositories.

    mahavishnu_polls_total{repo,outcome}       polls, outcome "ok" or "failed"
    mahavishnu_index_lag_seconds{repo}         how long the newest commit seen has waited to be
                                               queryable (0 when the index is up to date)
    mahavishnu_circuit_state{host}             a remote host's breaker: 0 closed, 1 half-open, 2 open
    mahavishnu_index_seconds{mode}             time to index a commit, "full" or "incremental"
    mahavishnu_index_freshness_seconds         per commit: from seen by a poll to queryable
                                               (the freshness SLO reads its 300 s bucket)
    """

    CIRCUIT_STATES: Final = {"closed": 0, "half-open": 1, "open": 2}

    def __init__(self, registry: CollectorRegistry) -> None:
        self.polls = Counter("mahavishnu_polls_total", "Polls of repositories.", ["repo", "outcome"], registry=registry)
        self.index_lag_seconds = Gauge(
            "mahavishnu_index_lag_seconds",
            "How long the newest commit seen has waited to be queryable (0 when up to date).",
            ["repo"],
            registry=registry,
        )
        self.circuit_state = Gauge(
            "mahavishnu_circuit_state",
            "The circuit breaker of a remote host: 0 closed, 1 half-open, 2 open.",
            ["host"],
            registry=registry,
        )
        self.index_seconds = Histogram(
            "mahavishnu_index_seconds",
            "Time to index one commit.",
            ["mode"],
            buckets=(0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0),
            registry=registry,
        )
        self.freshness_seconds = Histogram(
            "mahavishnu_index_freshness_seconds",
            "Time from a commit being seen by a poll to its index being queryable.",
            buckets=(1.0, 5.0, 15.0, 30.0, 60.0, 120.0, FRESHNESS_OBJECTIVE_S, 900.0, 3600.0),
            registry=registry,
        )


class CommandMetrics:
    """Commands and the agents that run them.

    mahavishnu_command_seconds{outcome}   from issue to the command's end, by outcome
                                          (succeeded, failed, timed_out, rejected, expired, canceled)
    mahavishnu_agents_connected           devices with at least one open connection to the mesh
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.command_seconds = Histogram(
            "mahavishnu_command_seconds",
            "Time from a command's issue to its end, by outcome.",
            ["outcome"],
            buckets=COMMAND_BUCKETS,
            registry=registry,
        )
        self.agents_connected = Gauge(
            "mahavishnu_agents_connected", "Devices with at least one open connection to the mesh.", registry=registry
        )


class UpdateMetrics:
    """How far the fleet is with each artifact, sampled from the read models (projections.updates.compliance).

    mahavishnu_update_devices{artifact,status}   devices per status: latest, pending, failed, outdated
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.devices = Gauge(
            "mahavishnu_update_devices",
            "Devices per artifact that run its latest version, have an update pending, failed it, or run older.",
            ["artifact", "status"],
            registry=registry,
        )
        self._shown: set[str] = set()

    def show(self, artifacts: Iterable[tuple[str, Mapping[str, int]]]) -> None:
        """Set every artifact's series from (name, counts per status); drop those of artifacts no longer listed."""
        shown: set[str] = set()
        for name, counts in artifacts:
            shown.add(name)
            for status, count in counts.items():
                self.devices.labels(artifact=name, status=status).set(count)
        for gone in self._shown - shown:
            for status in COMPLIANCE:
                with suppress(KeyError):
                    self.devices.remove(gone, status)
        self._shown = shown


class CampaignMetrics:
    """Fleet campaigns, as the campaigns read model applies their events.

    mahavishnu_campaign_executions{campaign,state}   a campaign's executions per state (and
                                                     `pending`: targets not notified yet); only
                                                     campaigns not over, so the series stay few
    mahavishnu_campaigns_aborted_total               campaigns an abort rule (or error gate) stopped
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.executions = Gauge(
            "mahavishnu_campaign_executions",
            "A campaign's executions per state (pending: targets not notified yet), while it is not over.",
            ["campaign", "state"],
            registry=registry,
        )
        self.aborted = Counter(
            "mahavishnu_campaigns_aborted_total",
            "Campaigns stopped by an abort rule or a wave's error gate.",
            registry=registry,
        )

    def show(self, campaign: str, counts: dict[str, int]) -> None:
        """Set a campaign's series from its counts (CampaignView.counts())."""
        for state, count in counts.items():
            self.executions.labels(campaign=campaign, state=state).set(count)

    def drop(self, campaign: str, states: Iterable[str]) -> None:
        """Remove a campaign's series: it is over, and its counts stay in the read model."""
        for state in states:
            with suppress(KeyError):  # never shown
                self.executions.remove(campaign, state)
