"""The streams of the mesh: the only source of truth (pure definitions).

    EVENTS    mesh.evt.>    everything that happened; limits retention, kept long
    COMMANDS  mesh.cmd.>    commands for devices; per-message TTL, so an expired
                            command is never delivered
    AUDIT     mesh.audit.>  the audit trail; deny delete and deny purge (append-only)
    CAMPAIGNS mesh.campaign.>  fleet campaigns: each campaign's decisions and its devices'
                            executions, apart from EVENTS so an orchestrator that restarts
                            replays campaigns only

All of them allow atomic batch publish (ADR-50: several events produced by one decision
land together or not at all) and fast batch publish (bulk appends, for throughput).
"""

from __future__ import annotations

from dataclasses import dataclass

from core.subjects import AUDIT_PREFIX, CAMPAIGNS_PREFIX, COMMANDS_PREFIX, EVENTS_PREFIX

DEFAULT_DUPLICATE_WINDOW_S = 120.0  # what an edge site's streams keep ([jetstream] sets the hub's)


@dataclass(frozen=True)
class StreamSource:
    """Another stream this one copies from, possibly in another JetStream domain.

    `api` is that domain's API prefix ("$JS.<domain>.API"); the server resumes each source
    where it left off (it records the source's sequence with every copied message), so a
    source that comes back after a cut delivers every message once and in order.
    """

    name: str
    api: str = ""  # "": the stream is in our own domain
    # (name, deliver subject) of a durable consumer the source's owner made for us, which we
    # may only restart: the owner, not we, decides what it delivers. (): our own consumer.
    consumer: tuple[str, str] | tuple[()] = ()

    def as_config(self) -> dict[str, object]:
        config: dict[str, object] = {"name": self.name}
        if self.consumer:
            config["consumer"] = {"name": self.consumer[0], "deliver_subject": self.consumer[1]}
        if self.api:
            config["external"] = {"api": self.api, "deliver": ""}
        return config


@dataclass(frozen=True)
class StreamSpec:
    """What we require of one stream; `as_config()` is the JetStream stream config."""

    name: str
    subjects: tuple[str, ...]
    max_age_s: float = 0.0  # 0: keep forever
    duplicate_window_s: float = DEFAULT_DUPLICATE_WINDOW_S
    replicas: int = 1
    deny_delete: bool = False
    deny_purge: bool = False
    allow_msg_ttl: bool = False
    description: str = ""
    sources: tuple[StreamSource, ...] = ()  # edge sites' EVENTS at the hub; the hub's COMMANDS at a site
    max_consumers: int = 0  # 0: the server's default (1,000 per stream since nats-server 2.15)

    def as_config(self) -> dict[str, object]:
        # JetStream durations are nanoseconds on the wire.
        config: dict[str, object] = {
            "name": self.name,
            "description": self.description,
            "subjects": list(self.subjects),
            "retention": "limits",
            "storage": "file",
            "discard": "old",
            "num_replicas": self.replicas,
            "max_age": int(self.max_age_s * 1e9),
            "duplicate_window": int(self.duplicate_window_s * 1e9),
            "deny_delete": self.deny_delete,
            "deny_purge": self.deny_purge,
            "allow_msg_ttl": self.allow_msg_ttl,
            "allow_atomic": True,
            "allow_batched": True,
            "allow_direct": True,
        }
        if self.sources:
            config["sources"] = [source.as_config() for source in self.sources]
        if self.max_consumers:
            config["max_consumers"] = self.max_consumers
        return config

    def owns(self, subject: str) -> bool:
        """True if `subject` is captured by this stream (prefix match on `x.>` filters)."""
        return any(subject.startswith(pattern[:-1]) for pattern in self.subjects if pattern.endswith(">"))


def default_streams(
    *,
    replicas: int = 1,
    duplicate_window_s: float = DEFAULT_DUPLICATE_WINDOW_S,
    events_max_age_s: float = 0.0,
    commands_max_age_s: float = 7 * 86400.0,
    audit_max_age_s: float = 0.0,
    max_devices: int = 100_000,
) -> tuple[StreamSpec, ...]:
    return (
        StreamSpec(
            name="EVENTS",
            subjects=(f"{EVENTS_PREFIX}.>",),
            max_age_s=events_max_age_s,
            duplicate_window_s=duplicate_window_s,
            replicas=replicas,
            description="Every state change of the mesh",
        ),
        StreamSpec(
            name="COMMANDS",
            subjects=(f"{COMMANDS_PREFIX}.>",),
            max_age_s=commands_max_age_s,
            duplicate_window_s=duplicate_window_s,
            replicas=replicas,
            allow_msg_ttl=True,
            max_consumers=max_devices,  # one durable consumer per device
            description="Commands for devices, each with its time to live",
        ),
        StreamSpec(
            name="AUDIT",
            subjects=(f"{AUDIT_PREFIX}.>",),
            max_age_s=audit_max_age_s,
            duplicate_window_s=duplicate_window_s,
            replicas=replicas,
            deny_delete=True,
            deny_purge=True,
            description="The append-only audit trail",
        ),
        StreamSpec(
            name="CAMPAIGNS",
            subjects=(f"{CAMPAIGNS_PREFIX}.>",),
            duplicate_window_s=duplicate_window_s,
            replicas=replicas,
            description="Fleet campaigns: their decisions and each device's execution",
        ),
    )


def stream_for(subject: str, streams: tuple[StreamSpec, ...]) -> StreamSpec:
    """The stream that captures `subject`; ValueError if none does."""
    for spec in streams:
        if spec.owns(subject):
            return spec
    raise ValueError(f"subject {subject!r} belongs to no stream of the mesh")


def stream_for_filter(subject_filter: str, streams: tuple[StreamSpec, ...]) -> StreamSpec:
    """The stream that holds what `subject_filter` (e.g. mesh.evt.device.*.>) matches; ValueError if none does."""
    return stream_for(subject_filter.rstrip(">*").rstrip(".") + ".", streams)
