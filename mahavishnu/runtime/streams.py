"""The streams of this mesh, sized by its settings (pure): what every client opens its EventStore on."""

from __future__ import annotations

from core.config import Settings
from core.streams import StreamSpec, default_streams
from mahavishnu.runtime.clusterplan import stream_replicas


def streams_of(settings: Settings) -> tuple[StreamSpec, ...]:
    """The three streams with [jetstream]'s limits and the replicas a cluster needs."""
    js = settings.jetstream
    return default_streams(
        replicas=stream_replicas(settings),
        duplicate_window_s=js.duplicate_window,
        events_max_age_s=js.events_max_age,
        commands_max_age_s=js.commands_max_age,
        audit_max_age_s=js.audit_max_age,
        max_devices=js.max_devices,
    )
