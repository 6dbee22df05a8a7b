"""Prometheus metrics shared by the services: one registry per process, small metric groups.

Each service builds one registry with `new_registry()`, hands it to the metric groups
it uses and to `core.probes.ProbeServer`, which serves it on /metrics. A registry per
process (never prometheus-client's global one) keeps tests independent and lets two
services share a process without their names clashing.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Histogram, gc_collector, platform_collector, process_collector

__all__ = ["APPEND_BUCKETS", "EventStoreMetrics", "new_registry"]

# Seconds; a local JetStream append acknowledges in about a millisecond, a replicated
# one over a WAN link in tens of milliseconds.
APPEND_BUCKETS: Final = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


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
    def time_append(self, stream: str) -> Iterator[None]:
        """Time the append inside the block and count it as appended, or failed if it raises.

        The exception is re-raised unchanged; its class name becomes the `reason` label.
        """
        start = time.perf_counter()
        try:
            yield
        except BaseException as exc:
            self.append_failed.labels(stream=stream, reason=type(exc).__name__).inc()
            raise
        else:
            self.appended.labels(stream=stream).inc()
        finally:
            self.append_seconds.labels(stream=stream).observe(time.perf_counter() - start)
