"""The settings, each declared once: type, bounds, default and description in one annotation.

One frozen struct per [section] of mahavishnu.toml; `Settings` holds them and names the
sections. Reading a file or the environment (core.config.loading), the checks, the
messages and the commented default file (core.config.defaults) all derive from these
declarations (core.config.fields says how). What a Meta cannot say, a check between two
fields, is a section's `relations`.

Durations are float seconds (`Duration`, written "30s"), sizes int bytes (`Size`,
written "10GB").
"""

from __future__ import annotations

from typing import Annotated, Final, Literal

import msgspec
from msgspec import Meta

from core.config.fields import Duration, Problem, Size, settings_of
from core.errors import ConfigError
from core.streams import DEFAULT_DUPLICATE_WINDOW_S
from core.units import format_duration

__all__ = [
    "SECTIONS",
    "SSH_MAX_OUTPUT_LIMIT",
    "CertsSettings",
    "CodeSettings",
    "HttpSettings",
    "JetStreamSettings",
    "LeafSettings",
    "LoggingSettings",
    "MeshSettings",
    "MetricsSettings",
    "MqttSettings",
    "Section",
    "SectionError",
    "ServerSettings",
    "Settings",
    "ShellSettings",
    "SshSettings",
]

Port = Annotated[int, Meta(ge=1, le=65535)]
PortOrOff = Annotated[int, Meta(ge=0, le=65535, extra={"must": "between 0 and 65535 (0 disables)"})]
Host = Annotated[str, Meta(pattern=r"\S", extra={"must": "a host name or address, not empty"})]

# A command's result travels in one event, under the server's 1 MB max_payload (edge.lifecycle).
SSH_MAX_OUTPUT_LIMIT: Final = 384 * 1024


class SectionError(ConfigError):
    """A section refused its values: one message per problem, and `found`, the (keys, problem) pairs behind them."""

    def __init__(self, section: str, found: list[Problem]) -> None:
        super().__init__([f"{section}.{keys[0]} {problem}" for keys, problem in found])
        self.found = found


class Section(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A [section] of the settings; building one checks it and raises SectionError (a ConfigError).

    Each field is checked against its declaration; then, when every field has the right
    type, `relations` checks what no single declaration can say.
    """

    def __post_init__(self) -> None:
        declared = settings_of(type(self))
        values = [(setting, getattr(self, setting.name)) for setting in declared]
        found: list[Problem] = [
            ((s.name,), problem) for s, value in values if (problem := s.problem(value)) is not None
        ]
        if all(s.fits(value) for s, value in values):
            found += self.relations()
        if found:
            raise SectionError(_NAMES[type(self)], found)

    def relations(self) -> list[Problem]:
        """Problems between fields of this section (each naming the keys involved); none by default."""
        return []


class MeshSettings(Section, frozen=True, kw_only=True):
    """The mesh's identity."""

    name: Annotated[
        str,
        Meta(
            pattern=r"\A[a-z0-9][a-z0-9-]{0,62}\Z",
            description="prefix of streams, subjects and certificate names",
            extra={"must": "1-63 lowercase letters, digits or '-', not starting with '-'"},
        ),
    ] = "mahavishnu"


class ServerSettings(Section, frozen=True, kw_only=True):
    """The NATS server that `up` runs, and how `up` restarts what crashes."""

    host: Annotated[Host, Meta(description="listen address")] = "127.0.0.1"
    port: Annotated[Port, Meta(description="client port (TLS, client certificates only)")] = 4222
    monitor_port: Annotated[PortOrOff, Meta(description="0 disables; always bound to 127.0.0.1")] = 8222
    hosts: Annotated[
        tuple[Annotated[str, Meta(pattern=r"\A\S+\Z")], ...],
        Meta(
            min_length=1,
            description="names in the server certificate",
            extra={"must": "a non-empty list of host names or addresses without spaces"},
        ),
    ] = ("localhost", "127.0.0.1")
    restart_backoff: Annotated[
        Duration, Meta(gt=0, description="first restart delay; doubles up to restart_backoff_max")
    ] = 0.5
    restart_backoff_max: Annotated[Duration, Meta(gt=0, description="the longest restart delay")] = 30.0
    give_up_after: Annotated[
        int,
        Meta(
            ge=1,
            description="crashes of one child (the server, a service) within give_up_window that make `up` stop, "
            "loudly, with a non-zero exit",
        ),
    ] = 5
    give_up_window: Annotated[Duration, Meta(gt=0, description="see give_up_after")] = 300.0
    cluster: Annotated[
        Literal[0, 3, 5],
        Meta(
            description="servers on this machine (up --cluster N)",
            extra={"must": "0 (one server), 3 or 5 (nodes on this machine)"},
        ),
    ] = 0
    cluster_port: Annotated[
        Port,
        Meta(
            description="route port of cluster node 1; node k uses cluster_port + k - 1 "
            "(clients: port + k - 1, monitoring: monitor_port + k - 1)"
        ),
    ] = 6222

    def relations(self) -> list[Problem]:
        found: list[Problem] = []
        if self.monitor_port == self.port:
            found.append((("monitor_port", "port"), f"must differ from server.port ({self.port})"))
        found += self._cluster_runs()
        if self.restart_backoff_max < self.restart_backoff:
            found.append(
                (
                    ("restart_backoff_max", "restart_backoff"),
                    f"({format_duration(self.restart_backoff_max)}) must not be shorter than server.restart_backoff "
                    f"({format_duration(self.restart_backoff)})",
                )
            )
        return found

    def _cluster_runs(self) -> list[Problem]:
        """A cluster's nodes take runs of consecutive ports: each run must fit and none may overlap another."""
        if self.cluster not in (3, 5):  # one server, or a size refused by its own check
            return []
        runs = {"port": self.port, "cluster_port": self.cluster_port}
        if self.monitor_port:
            runs["monitor_port"] = self.monitor_port
        found: list[Problem] = []
        for key, first in runs.items():
            if first <= 65535 < first + self.cluster - 1:
                found.append(((key, "cluster"), f"({first}) leaves no room for {self.cluster} consecutive ports"))
        keys = sorted(runs)
        for i, a in enumerate(keys):
            for b in keys[i + 1 :]:
                if abs(runs[a] - runs[b]) < self.cluster:
                    overlap = f"({runs[a]}) and server.{b} ({runs[b]}) overlap for {self.cluster} nodes"
                    found.append(((a, b, "cluster"), overlap))
        return found


class JetStreamSettings(Section, frozen=True, kw_only=True):
    """JetStream's limits, and how long the streams keep messages."""

    max_memory: Annotated[Size, Meta(gt=0, description="memory JetStream may use")] = 256 * 1024**2
    max_file: Annotated[Size, Meta(gt=0, description="disk JetStream may use")] = 10 * 1024**3
    replicas: Annotated[Literal[1, 3, 5], Meta(description="copies of each stream")] = 1
    duplicate_window: Annotated[
        Duration, Meta(gt=0, description="a message id seen again within this is dropped as a duplicate")
    ] = 120.0
    events_max_age: Annotated[Duration, Meta(ge=0, description="events older are deleted; 0 keeps forever")] = 0.0
    commands_max_age: Annotated[Duration, Meta(ge=0, description="commands older are deleted; 0 keeps forever")] = (
        7 * 86400.0
    )
    audit_max_age: Annotated[Duration, Meta(ge=0, description="audit records older are deleted; 0 keeps forever")] = 0.0
    # nats-server (2.15 on) allows 1,000 consumers per stream unless the stream says otherwise,
    # and every device has a durable consumer on COMMANDS: this is how many devices one mesh holds.
    max_devices: Annotated[int, Meta(ge=1, description="durable consumers allowed on COMMANDS: one per device")] = (
        100_000
    )

    def relations(self) -> list[Problem]:
        found: list[Problem] = []
        for key in ("events_max_age", "commands_max_age", "audit_max_age"):
            age = getattr(self, key)
            if 0 < age < self.duplicate_window:
                found.append(
                    (
                        (key, "duplicate_window"),
                        f"({format_duration(age)}) must be 0s (keep forever) or at least jetstream.duplicate_window "
                        f"({format_duration(self.duplicate_window)}); NATS refuses a duplicate window longer than "
                        "a max age",
                    )
                )
        return found


class CertsSettings(Section, frozen=True, kw_only=True):
    """The certificates the mesh CA issues."""

    algorithm: Annotated[Literal["ecdsa-p256", "ed25519"], Meta(description="key algorithm")] = "ecdsa-p256"
    ca_days: Annotated[int, Meta(ge=1, description="validity of the CA certificate in days")] = 3650
    server_days: Annotated[int, Meta(ge=1, description="validity of server certificates in days")] = 397
    client_days: Annotated[int, Meta(ge=1, description="validity of client certificates in days")] = 365

    def relations(self) -> list[Problem]:
        found: list[Problem] = []
        for key in ("server_days", "client_days"):
            days = getattr(self, key)
            if days > self.ca_days >= 1:
                found.append(
                    (
                        (key, "ca_days"),
                        f"({days}) must not exceed certs.ca_days ({self.ca_days}); a certificate cannot outlive its CA",
                    )
                )
        return found


class LoggingSettings(Section, frozen=True, kw_only=True):
    """Log lines (core.logs.configure_logging)."""

    level: Annotated[
        Literal["debug", "info", "warning", "error"], Meta(description="the least severe level logged")
    ] = "info"
    format: Annotated[Literal["json", "text"], Meta(description="one JSON object a line, or text")] = "json"


class MetricsSettings(Section, frozen=True, kw_only=True):
    """The metrics and probe server (/metrics, /health, /ready), and where the SLO report reads the metrics."""

    host: Annotated[Host, Meta(description="listen address")] = "127.0.0.1"
    port: Annotated[PortOrOff, Meta(description="0 disables")] = 9464
    prometheus: Annotated[
        str,
        Meta(
            pattern=r"\Ahttps?://",
            description="the Prometheus `mahavishnu slo report` asks",
            extra={"must": "an http:// or https:// URL"},
        ),
    ] = "http://127.0.0.1:9090"
    job: Annotated[
        str,
        Meta(
            pattern=r"\S",
            description="the scrape job of this mesh's metrics in that Prometheus",
            extra={"must": "a job name, not empty"},
        ),
    ] = "mahavishnu"


class HttpSettings(Section, frozen=True, kw_only=True):
    """The HTTP query API and the dashboard."""

    host: Annotated[Host, Meta(description="listen address")] = "127.0.0.1"
    port: Annotated[PortOrOff, Meta(description="0 disables")] = 8480
    tls: Annotated[
        bool,
        Meta(
            description="HTTPS with the mesh's server certificate, operators' client certificates accepted beside "
            "tokens; false: plain HTTP, tokens only"
        ),
    ] = True


class CodeSettings(Section, frozen=True, kw_only=True):
    """The code index: how often repositories are polled, how much at once, how files are indexed."""

    poll_interval: Annotated[
        Duration, Meta(gt=0, description="each repository once per interval, at an offset of its own")
    ] = 30.0
    poll_jitter: Annotated[
        float,
        Meta(
            ge=0,
            le=1,
            description="plus up to this fraction of the interval at random",
            extra={"must": "a fraction of the interval from 0 to 1"},
        ),
    ] = 0.1
    max_concurrent_polls: Annotated[int, Meta(ge=1, description="repositories polled at once, at most")] = 2
    breaker_failures: Annotated[
        int, Meta(ge=1, description="consecutive failed polls that open a remote host's circuit")
    ] = 5
    breaker_cooldown: Annotated[
        Duration, Meta(gt=0, description="then, after this long, one trial poll (half-open)")
    ] = 60.0
    mode: Annotated[
        Literal["redact", "block"],
        Meta(description="a file with a high-severity secret is indexed with it replaced, or not at all"),
    ] = "redact"
    max_file_size: Annotated[Size, Meta(ge=1, description="larger files are skipped, with an event")] = 1024**2
    index_workers: Annotated[int, Meta(ge=1, description="processes analysing files")] = 2


class MqttSettings(Section, frozen=True, kw_only=True):
    """The MQTT 3.1.1 listener for devices that speak only MQTT (mTLS, like the NATS listener)."""

    host: Annotated[Host, Meta(description="listen address")] = "127.0.0.1"
    port: Annotated[
        PortOrOff,
        Meta(
            description="0: off (no MQTT devices, no second door); 8883 is MQTT over TLS's usual port; "
            "in a cluster node k listens on port + k - 1"
        ),
    ] = 0


class LeafSettings(Section, frozen=True, kw_only=True):
    """The listener where edge sites' leaf servers dial in (mTLS, site certificates only)."""

    host: Annotated[Host, Meta(description="listen address")] = "127.0.0.1"
    port: Annotated[PortOrOff, Meta(description="0: no leaf node listener; 7422 is the usual port")] = 0
    # A site's streams are its buffer while the hub is away: what the hub copied stays at the hub,
    # so the site need not keep it forever; an outage longer than this loses what is older.
    site_retention: Annotated[
        Duration, Meta(ge=0, description="how long each site keeps its events and commands; 0 keeps forever")
    ] = 30 * 86400.0

    def relations(self) -> list[Problem]:
        if 0 < self.site_retention < DEFAULT_DUPLICATE_WINDOW_S:
            return [
                (
                    ("site_retention",),
                    f"({format_duration(self.site_retention)}) must be 0s (keep forever) or at least "
                    f"{format_duration(DEFAULT_DUPLICATE_WINDOW_S)}, a site stream's duplicate window",
                )
            ]
        return []


class ShellSettings(Section, frozen=True, kw_only=True):
    """The remote terminal (`mahavishnu shell`): when the broker in `up` closes a session."""

    idle_timeout: Annotated[
        Duration, Meta(gt=0, description="a remote terminal without a keystroke this long is closed")
    ] = 900.0
    max_duration: Annotated[Duration, Meta(gt=0, description="and every remote terminal after this long")] = 1800.0
    owner_timeout: Annotated[
        Duration, Meta(gt=0, description="and one whose opening connection sends nothing this long")
    ] = 30.0


class SshSettings(Section, frozen=True, kw_only=True):
    """The SSH gateway (hosts registered with transport ssh): its connection pool, timeouts and output cap."""

    max_connections_per_host: Annotated[
        int, Meta(ge=1, description="open connections to one host:port at most; further commands wait")
    ] = 4
    connect_timeout: Annotated[
        Duration, Meta(gt=0, description="TCP, key exchange, host key check and authentication together")
    ] = 10.0
    command_timeout: Annotated[
        Duration,
        Meta(gt=0, description="the longest a command runs; a command's own --timeout can only shorten it"),
    ] = 60.0
    max_output: Annotated[
        Size,
        Meta(
            ge=1,
            le=SSH_MAX_OUTPUT_LIMIT,
            description="bytes kept of stdout and of stderr each; the rest is dropped and marked",
            extra={
                "must": f"from 1 byte to {SSH_MAX_OUTPUT_LIMIT // 1024}KB (stdout and stderr each must fit in "
                "one event)"
            },
        ),
    ] = 64 * 1024
    idle_timeout: Annotated[Duration, Meta(gt=0, description="an unused pooled connection is closed after this")] = 60.0


class Settings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """All settings, one field per [section] of mahavishnu.toml, in the order the default file shows them."""

    mesh: MeshSettings = msgspec.field(default_factory=MeshSettings)
    server: ServerSettings = msgspec.field(default_factory=ServerSettings)
    jetstream: JetStreamSettings = msgspec.field(default_factory=JetStreamSettings)
    certs: CertsSettings = msgspec.field(default_factory=CertsSettings)
    logging: LoggingSettings = msgspec.field(default_factory=LoggingSettings)
    metrics: MetricsSettings = msgspec.field(default_factory=MetricsSettings)
    http: HttpSettings = msgspec.field(default_factory=HttpSettings)
    code: CodeSettings = msgspec.field(default_factory=CodeSettings)
    mqtt: MqttSettings = msgspec.field(default_factory=MqttSettings)
    leaf: LeafSettings = msgspec.field(default_factory=LeafSettings)
    shell: ShellSettings = msgspec.field(default_factory=ShellSettings)
    ssh: SshSettings = msgspec.field(default_factory=SshSettings)


# The sections by their names in the file, as Settings declares them.
SECTIONS: Final[dict[str, type[Section]]] = {field.name: field.type for field in msgspec.structs.fields(Settings)}
_NAMES: Final = {cls: name for name, cls in SECTIONS.items()}
assert len(_NAMES) == len(SECTIONS), "each section needs a struct of its own: messages name the section by it"
