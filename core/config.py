"""Settings: one TOML file plus environment overrides, validated on load.

    settings = load_settings()          # $MAHAVISHNU_CONFIG or <home>/mahavishnu.toml, plus env
    settings = load_config(path, env)   # an explicit file (None: none) plus env

The file has the sections and keys of `Settings` (DEFAULT_TOML shows them all); every
key is optional. An environment variable `MAHAVISHNU_<SECTION>__<KEY>` (two
underscores) overrides one key and wins over the file: `MAHAVISHNU_SERVER__PORT=4333`,
`MAHAVISHNU_SERVER__HOSTS=a.example,10.0.0.5` (lists are comma-separated). Durations
are written "500ms", "30s", "2m", "1h", "7d" (or seconds) and held as float seconds;
sizes "512KB", "10GB", "1.5GiB" (or bytes) and held as int bytes (see core.units).

Loading never stops at the first mistake: every wrong value, unknown key and bad
variable gives one message, naming the file or the variable, with the nearest valid
name for an unknown one, and all of them are raised together as one ConfigError.
The setting structs also validate themselves when built in code.

Only the standard library and msgspec are used: a device agent loads this too.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Final, Literal

import msgspec

from core.errors import ConfigError
from core.units import format_duration, parse_duration, parse_size

__all__ = [
    "DEFAULT_TOML",
    "CertsSettings",
    "ConfigError",
    "HttpSettings",
    "JetStreamSettings",
    "LeafSettings",
    "LoggingSettings",
    "MeshSettings",
    "MetricsSettings",
    "MqttSettings",
    "ServerSettings",
    "Settings",
    "ShellSettings",
    "SshSettings",
    "config_path",
    "home_dir",
    "load_config",
    "load_settings",
]

ENV_PREFIX: Final = "MAHAVISHNU_"
CONFIG_FILE_NAME: Final = "mahavishnu.toml"

DEFAULT_TOML: Final = """\
[mesh]
name = "mahavishnu"          # lowercase letters, digits and "-", at most 63
[server]
host = "127.0.0.1"           # listen address
port = 4222
monitor_port = 8222          # 0 disables; always bound to 127.0.0.1
hosts = ["localhost", "127.0.0.1"]   # names in the server certificate
restart_backoff = "0.5s"     # first restart delay; doubles up to restart_backoff_max
restart_backoff_max = "30s"
give_up_after = 5            # crashes of one child (the server, a service) within give_up_window:
give_up_window = "5m"        # then `up` stops, loudly, with a non-zero exit
cluster = 0                  # 0: one server; 3 or 5: that many nodes on this machine (up --cluster N)
cluster_port = 6222          # route port of cluster node 1; node k uses cluster_port + k - 1 (client: port + k - 1)
[jetstream]
max_memory = "256MB"
max_file = "10GB"
replicas = 1                 # 1, 3 or 5
duplicate_window = "2m"
events_max_age = "0s"        # 0 keeps forever
commands_max_age = "7d"
audit_max_age = "0s"
[certs]
algorithm = "ecdsa-p256"     # or "ed25519"
ca_days = 3650
server_days = 397
client_days = 365
[logging]
level = "info"               # debug, info, warning, error
format = "json"              # json or text
[metrics]
host = "127.0.0.1"
port = 9464                  # 0 disables
prometheus = "http://127.0.0.1:9090"   # the Prometheus `mahavishnu slo report` asks
job = "mahavishnu"           # the scrape job of this mesh's metrics in that Prometheus
[http]
host = "127.0.0.1"           # the HTTP query API and dashboard
port = 8480                  # 0 disables
tls = true                   # HTTPS with the mesh's server certificate; operators' client certificates accepted
[code]
poll_interval = "30s"        # each repository once per interval, at an offset of its own
poll_jitter = 0.1            # plus up to this fraction of the interval at random
max_concurrent_polls = 2
breaker_failures = 5         # consecutive failed polls that open a remote host's circuit
breaker_cooldown = "1m"      # then one trial poll (half-open)
mode = "redact"              # or "block": a file with a high-severity secret is not indexed
max_file_size = "1MB"        # larger files are skipped, with an event
index_workers = 2            # processes analysing files
[mqtt]
host = "127.0.0.1"           # the MQTT 3.1.1 listener for MQTT-only devices (mTLS, like the NATS one)
port = 0                     # 0: off (no MQTT devices, no second door); 8883 is MQTT over TLS's usual port
[leaf]
host = "127.0.0.1"           # where edge sites' leaf servers dial in (mTLS, site certificates only)
port = 0                     # 0: no leaf node listener; 7422 is the usual port
[shell]
idle_timeout = "15m"         # a remote terminal without a keystroke this long is closed
max_duration = "30m"         # and every one after this long
owner_timeout = "30s"        # or when the connection that opened it sends nothing this long
[ssh]
max_connections_per_host = 4 # the SSH gateway's pool: open connections to one host:port at most
connect_timeout = "10s"      # TCP, key exchange, host key check and authentication together
command_timeout = "60s"      # the longest a command runs; a command's own --timeout can only shorten it
max_output = "64KB"          # bytes kept of stdout and of stderr each; the rest is dropped and marked
idle_timeout = "60s"         # an unused pooled connection is closed after this
"""


# -- The settings ---------------------------------------------------------------------


class _Section(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A settings section; building one checks its values and raises ConfigError."""

    SECTION: ClassVar[str] = ""

    def __post_init__(self) -> None:
        problems = [f"{self.SECTION}.{keys[0]} {problem}" for keys, problem in _problems(self.SECTION, self)]
        if problems:
            raise ConfigError(problems)


class MeshSettings(_Section, frozen=True, kw_only=True):
    """The mesh's name: a prefix for streams, subjects and certificate names."""

    SECTION: ClassVar[str] = "mesh"
    name: str = "mahavishnu"


class ServerSettings(_Section, frozen=True, kw_only=True):
    """The NATS server: listener, monitor port (0 off), certificate names, restart backoff in seconds.

    `give_up_after` crashes within `give_up_window` seconds of any one child of `up` (this
    server, or a service such as the projections) make `up` stop instead of restarting it.
    `cluster` 3 or 5 runs that many nodes on this machine instead of one (`up --cluster N`):
    node k listens for clients on `port` + k - 1, for routes on `cluster_port` + k - 1 and,
    when `monitor_port` is set, for monitoring on `monitor_port` + k - 1.
    """

    SECTION: ClassVar[str] = "server"
    host: str = "127.0.0.1"
    port: int = 4222
    monitor_port: int = 8222
    hosts: tuple[str, ...] = ("localhost", "127.0.0.1")
    restart_backoff: float = 0.5
    restart_backoff_max: float = 30.0
    give_up_after: int = 5
    give_up_window: float = 300.0
    cluster: int = 0
    cluster_port: int = 6222


class JetStreamSettings(_Section, frozen=True, kw_only=True):
    """JetStream limits in bytes, replicas, and per-stream ages in seconds (0 keeps forever)."""

    SECTION: ClassVar[str] = "jetstream"
    max_memory: int = 256 * 1024**2
    max_file: int = 10 * 1024**3
    replicas: int = 1
    duplicate_window: float = 120.0
    events_max_age: float = 0.0
    commands_max_age: float = 7 * 86400.0
    audit_max_age: float = 0.0


class CertsSettings(_Section, frozen=True, kw_only=True):
    """Key algorithm and validity in days of the CA, server and client certificates."""

    SECTION: ClassVar[str] = "certs"
    algorithm: Literal["ecdsa-p256", "ed25519"] = "ecdsa-p256"
    ca_days: int = 3650
    server_days: int = 397
    client_days: int = 365


class LoggingSettings(_Section, frozen=True, kw_only=True):
    """Arguments of core.logs.configure_logging."""

    SECTION: ClassVar[str] = "logging"
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["json", "text"] = "json"


class MetricsSettings(_Section, frozen=True, kw_only=True):
    """Where core.probes.ProbeServer listens (port 0: no metrics or probe server).

    `prometheus` and `job` say where the SLO report finds these metrics once scraped:
    the Prometheus server's URL and the job name its scrape configuration gives them.
    """

    SECTION: ClassVar[str] = "metrics"
    host: str = "127.0.0.1"
    port: int = 9464
    prometheus: str = "http://127.0.0.1:9090"
    job: str = "mahavishnu"


class HttpSettings(_Section, frozen=True, kw_only=True):
    """Where the HTTP query API and the dashboard listen (port 0: none), and whether over HTTPS.

    `tls` serves HTTPS with the mesh's server certificate and accepts operators' client
    certificates beside bearer tokens; off, plain HTTP with tokens only.
    """

    SECTION: ClassVar[str] = "http"
    host: str = "127.0.0.1"
    port: int = 8480
    tls: bool = True


class MqttSettings(_Section, frozen=True, kw_only=True):
    """The MQTT listener for devices that speak only MQTT 3.1.1 (port 0: none).

    Off by default: a mesh without MQTT devices should not open a second listener. On, it
    takes client certificates from the mesh CA exactly as the NATS listener does.
    """

    SECTION: ClassVar[str] = "mqtt"
    host: str = "127.0.0.1"
    port: int = 0


class CodeSettings(_Section, frozen=True, kw_only=True):
    """The code index: how often repositories are polled, how much at once, how files are indexed.

    Each repository polls once per `poll_interval`, at an offset of its own within it plus
    up to `poll_jitter` of it at random, and never more than `max_concurrent_polls` at once.
    A remote host's circuit opens after `breaker_failures` consecutive failed polls and
    half-opens after `breaker_cooldown`. `mode` "block" refuses to index a file holding a
    high-severity secret; "redact" indexes it with the secret replaced. Files larger than
    `max_file_size` are skipped with an event. `index_workers` processes analyse files.
    """

    SECTION: ClassVar[str] = "code"
    poll_interval: float = 30.0
    poll_jitter: float = 0.1
    max_concurrent_polls: int = 2
    breaker_failures: int = 5
    breaker_cooldown: float = 60.0
    mode: Literal["redact", "block"] = "redact"
    max_file_size: int = 1024**2
    index_workers: int = 2


class LeafSettings(_Section, frozen=True, kw_only=True):
    """The hub's listener for edge sites' leaf servers (port 0: none, the default: no new open port
    unless edge sites are wanted). Sites authenticate with their own certificate from the mesh CA.
    """

    SECTION: ClassVar[str] = "leaf"
    host: str = "127.0.0.1"
    port: int = 0


class ShellSettings(_Section, frozen=True, kw_only=True):
    """The remote terminal (`mahavishnu shell`): when the broker in `up` closes a session.

    `idle_timeout` without a keystroke, `max_duration` in all, `owner_timeout` without a
    request from the connection that opened it (its reads stop: a connection that hangs).
    """

    SECTION: ClassVar[str] = "shell"
    idle_timeout: float = 900.0
    max_duration: float = 1800.0
    owner_timeout: float = 30.0


class SshSettings(_Section, frozen=True, kw_only=True):
    """The SSH gateway (hosts registered with transport ssh): its connection pool, timeouts and output cap.

    At most `max_connections_per_host` connections to one host:port are open at once;
    further commands wait for one. `connect_timeout` bounds the TCP connect, key exchange,
    host key check and authentication together; `command_timeout` bounds a command's
    run; `max_output` bytes of stdout and of stderr each are kept (it must fit in one
    event); a pooled connection unused for `idle_timeout` is closed.
    """

    SECTION: ClassVar[str] = "ssh"
    max_connections_per_host: int = 4
    connect_timeout: float = 10.0
    command_timeout: float = 60.0
    max_output: int = 64 * 1024
    idle_timeout: float = 60.0


class Settings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """All settings. Durations are float seconds, sizes int bytes."""

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


_SECTIONS: Final[dict[str, type[_Section]]] = {
    cls.SECTION: cls
    for cls in (
        MeshSettings,
        ServerSettings,
        JetStreamSettings,
        CertsSettings,
        LoggingSettings,
        MetricsSettings,
        HttpSettings,
        CodeSettings,
        MqttSettings,
        LeafSettings,
        ShellSettings,
        SshSettings,
    )
}


# -- Kinds: how a TOML value or an environment string becomes a typed value ----------


@dataclass(frozen=True)
class _Kind:
    """`describe` completes "must be ..."; both converters raise ValueError or KeyError."""

    describe: str
    from_file: Callable[[Any], Any]
    from_env: Callable[[str], Any]


def _require(ok: bool, value: Any) -> Any:
    if not ok:
        raise ValueError(value)
    return value


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _choice(*options: str) -> _Kind:
    def pick(value: Any) -> str:
        text = _require(isinstance(value, str), value).strip().lower()
        return str(_require(text in options, text))

    return _Kind("one of " + ", ".join(options), pick, pick)


_STR: Final = _Kind("a string", lambda v: _require(isinstance(v, str), v), str)
_INT: Final = _Kind(
    "a whole number", lambda v: _require(isinstance(v, int) and not isinstance(v, bool), v), lambda s: int(s, 10)
)
_BOOLEANS: Final = {
    "true": True,
    "false": False,
    "yes": True,
    "no": False,
    "on": True,
    "off": False,
    "1": True,
    "0": False,
}
_BOOL: Final = _Kind(
    "true or false",
    lambda v: _require(isinstance(v, bool), v),
    lambda s: _BOOLEANS[s.strip().lower()],
)
_STRS: Final = _Kind(
    "a list of strings (comma-separated in a variable)",
    lambda v: tuple(_require(isinstance(v, list) and all(isinstance(i, str) for i in v), v)),
    lambda s: tuple(part.strip() for part in s.split(",") if part.strip()),
)
_DURATION: Final = _Kind(
    'a duration such as "500ms", "30s", "2m", "1h", "7d" or a number of seconds',
    lambda v: parse_duration(_require(isinstance(v, str) or _is_number(v), v)),
    parse_duration,
)
_SIZE: Final = _Kind(
    'a size such as "512KB", "256MB", "10GB", "1.5GiB" or a number of bytes',
    lambda v: parse_size(_require(isinstance(v, str | int) and not isinstance(v, bool), v)),
    parse_size,
)

_FRACTION: Final = _Kind(
    "a number from 0 to 1",
    lambda v: float(_require(_is_number(v) and 0 <= v <= 1, v)),
    lambda s: float(_require(0 <= float(s) <= 1, s)),
)

_KINDS: Final[dict[str, dict[str, _Kind]]] = {
    "mesh": {"name": _STR},
    "server": {
        "host": _STR,
        "port": _INT,
        "monitor_port": _INT,
        "hosts": _STRS,
        "restart_backoff": _DURATION,
        "restart_backoff_max": _DURATION,
        "give_up_after": _INT,
        "give_up_window": _DURATION,
        "cluster": _INT,
        "cluster_port": _INT,
    },
    "jetstream": {
        "max_memory": _SIZE,
        "max_file": _SIZE,
        "replicas": _INT,
        "duplicate_window": _DURATION,
        "events_max_age": _DURATION,
        "commands_max_age": _DURATION,
        "audit_max_age": _DURATION,
    },
    "certs": {"algorithm": _choice("ecdsa-p256", "ed25519"), "ca_days": _INT, "server_days": _INT, "client_days": _INT},
    "logging": {"level": _choice("debug", "info", "warning", "error"), "format": _choice("json", "text")},
    "metrics": {"host": _STR, "port": _INT, "prometheus": _STR, "job": _STR},
    "http": {"host": _STR, "port": _INT, "tls": _BOOL},
    "code": {
        "poll_interval": _DURATION,
        "poll_jitter": _FRACTION,
        "max_concurrent_polls": _INT,
        "breaker_failures": _INT,
        "breaker_cooldown": _DURATION,
        "mode": _choice("redact", "block"),
        "max_file_size": _SIZE,
        "index_workers": _INT,
    },
    "mqtt": {"host": _STR, "port": _INT},
    "leaf": {"host": _STR, "port": _INT},
    "shell": {"idle_timeout": _DURATION, "max_duration": _DURATION, "owner_timeout": _DURATION},
    "ssh": {
        "max_connections_per_host": _INT,
        "connect_timeout": _DURATION,
        "command_timeout": _DURATION,
        "max_output": _SIZE,
        "idle_timeout": _DURATION,
    },
}


# -- Checks: ((key, related keys...), problem) for every wrong value -----------------

_Problem = tuple[tuple[str, ...], str]
_MESH_NAME: Final = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")


def _port(key: str, value: int, *, zero_disables: bool) -> list[_Problem]:
    low = 0 if zero_disables else 1
    if low <= value <= 65535:
        return []
    note = " (0 disables)" if zero_disables else ""
    return [((key,), f"must be between {low} and 65535{note}, got {value}")]


def _positive(key: str, value: float, unit: str) -> list[_Problem]:
    return [] if value > 0 else [((key,), f"must be more than 0{unit}, got {value}")]


def _hosts(key: str, hosts: tuple[str, ...]) -> list[_Problem]:
    if hosts and all(h.strip() and not any(c.isspace() for c in h) for h in hosts):
        return []
    return [((key,), f"must be a non-empty list of host names or addresses without spaces, got {list(hosts)!r}")]


def _check_mesh(v: Any) -> list[_Problem]:
    if _MESH_NAME.fullmatch(v.name):
        return []
    return [(("name",), f"must be 1-63 lowercase letters, digits or '-', not starting with '-', got {v.name!r}")]


def _check_server(v: Any) -> list[_Problem]:
    found = [*_hosts("hosts", v.hosts), *_positive("restart_backoff", v.restart_backoff, "s")]
    if not v.host.strip():
        found.append((("host",), "must not be empty"))
    found += _port("port", v.port, zero_disables=False) + _port("monitor_port", v.monitor_port, zero_disables=True)
    if v.monitor_port == v.port:
        found.append((("monitor_port", "port"), f"must differ from server.port ({v.port})"))
    found += _check_cluster(v)
    if v.restart_backoff_max < v.restart_backoff:
        found.append(
            (
                ("restart_backoff_max", "restart_backoff"),
                f"({format_duration(v.restart_backoff_max)}) must not be shorter than server.restart_backoff "
                f"({format_duration(v.restart_backoff)})",
            )
        )
    if v.give_up_after < 1:
        found.append((("give_up_after",), f"must be at least 1 crash, got {v.give_up_after}"))
    found += _positive("give_up_window", v.give_up_window, "s")
    return found


def _check_cluster(v: Any) -> list[_Problem]:
    """A cluster's nodes take runs of consecutive ports: each run must fit and none may overlap another."""
    if v.cluster not in (0, 3, 5):
        return [(("cluster",), f"must be 0 (one server), 3 or 5 (nodes on this machine), got {v.cluster}")]
    found = _port("cluster_port", v.cluster_port, zero_disables=False)
    if not v.cluster:
        return found
    runs = {"port": v.port, "cluster_port": v.cluster_port}
    if v.monitor_port:
        runs["monitor_port"] = v.monitor_port
    for key, first in runs.items():
        if first <= 65535 < first + v.cluster - 1:
            found.append(((key, "cluster"), f"({first}) leaves no room for {v.cluster} consecutive ports"))
    keys = sorted(runs)
    for i, a in enumerate(keys):
        for b in keys[i + 1 :]:
            if abs(runs[a] - runs[b]) < v.cluster:
                overlap = f"({runs[a]}) and server.{b} ({runs[b]}) overlap for {v.cluster} nodes"
                found.append(((a, b, "cluster"), overlap))
    return found


def _check_jetstream(v: Any) -> list[_Problem]:
    found = [*_positive("max_memory", v.max_memory, " bytes"), *_positive("max_file", v.max_file, " bytes")]
    found += _positive("duplicate_window", v.duplicate_window, "s")
    if v.replicas not in (1, 3, 5):
        found.append((("replicas",), f"must be 1, 3 or 5, got {v.replicas}"))
    for key in ("events_max_age", "commands_max_age", "audit_max_age"):
        age = getattr(v, key)
        if 0 < age < v.duplicate_window:
            found.append(
                (
                    (key, "duplicate_window"),
                    f"({format_duration(age)}) must be 0s (keep forever) or at least jetstream.duplicate_window "
                    f"({format_duration(v.duplicate_window)}); NATS refuses a duplicate window longer than a max age",
                )
            )
    return found


def _check_certs(v: Any) -> list[_Problem]:
    found: list[_Problem] = []
    if v.algorithm not in ("ecdsa-p256", "ed25519"):
        found.append((("algorithm",), f"must be ecdsa-p256 or ed25519, got {v.algorithm!r}"))
    for key in ("ca_days", "server_days", "client_days"):
        if getattr(v, key) < 1:
            found.append(((key,), f"must be at least 1, got {getattr(v, key)}"))
    for key in ("server_days", "client_days"):
        if getattr(v, key) > v.ca_days >= 1:
            found.append(
                (
                    (key, "ca_days"),
                    f"({getattr(v, key)}) must not exceed certs.ca_days ({v.ca_days}); "
                    "a certificate cannot outlive its CA",
                )
            )
    return found


def _check_logging(v: Any) -> list[_Problem]:
    found: list[_Problem] = []
    if v.level not in ("debug", "info", "warning", "error"):
        found.append((("level",), f"must be one of debug, info, warning, error, got {v.level!r}"))
    if v.format not in ("json", "text"):
        found.append((("format",), f"must be json or text, got {v.format!r}"))
    return found


def _check_listener(v: Any) -> list[_Problem]:
    found = _port("port", v.port, zero_disables=True)
    if not v.host.strip():
        found.append((("host",), "must not be empty"))
    return found


def _check_metrics(v: Any) -> list[_Problem]:
    found = _check_listener(v)
    if not v.prometheus.startswith(("http://", "https://")):
        found.append((("prometheus",), f"must be an http:// or https:// URL, got {v.prometheus!r}"))
    if not v.job.strip():
        found.append((("job",), "must not be empty"))
    return found


def _check_code(v: Any) -> list[_Problem]:
    found = _positive("poll_interval", v.poll_interval, "s") + _positive("breaker_cooldown", v.breaker_cooldown, "s")
    if not 0 <= v.poll_jitter <= 1:
        found.append((("poll_jitter",), f"must be a fraction of the interval from 0 to 1, got {v.poll_jitter}"))
    for key in ("max_concurrent_polls", "breaker_failures", "index_workers"):
        if getattr(v, key) < 1:
            found.append(((key,), f"must be at least 1, got {getattr(v, key)}"))
    if v.mode not in ("redact", "block"):
        found.append((("mode",), f"must be redact or block, got {v.mode!r}"))
    if v.max_file_size < 1:
        found.append((("max_file_size",), f"must be a positive size, got {v.max_file_size}"))
    return found


def _check_shell(v: Any) -> list[_Problem]:
    return [
        *_positive("idle_timeout", v.idle_timeout, "s"),
        *_positive("max_duration", v.max_duration, "s"),
        *_positive("owner_timeout", v.owner_timeout, "s"),
    ]


# A command's result travels in one event, under the server's 1 MB max_payload (edge.lifecycle).
SSH_MAX_OUTPUT_LIMIT: Final = 384 * 1024


def _check_ssh(v: Any) -> list[_Problem]:
    found: list[_Problem] = []
    if v.max_connections_per_host < 1:
        found.append((("max_connections_per_host",), f"must be at least 1, got {v.max_connections_per_host}"))
    for key in ("connect_timeout", "command_timeout", "idle_timeout"):
        found += _positive(key, getattr(v, key), "s")
    if not 1 <= v.max_output <= SSH_MAX_OUTPUT_LIMIT:
        found.append(
            (
                ("max_output",),
                f"must be from 1 byte to {SSH_MAX_OUTPUT_LIMIT // 1024}KB (stdout and stderr each must fit in "
                f"one event), got {v.max_output}",
            )
        )
    return found


_CHECKS: Final[dict[str, Callable[[Any], list[_Problem]]]] = {
    "mesh": _check_mesh,
    "server": _check_server,
    "jetstream": _check_jetstream,
    "certs": _check_certs,
    "logging": _check_logging,
    "metrics": _check_metrics,
    "http": _check_listener,
    "code": _check_code,
    "mqtt": _check_listener,
    "leaf": _check_listener,  # a host, and a port or 0
    "shell": _check_shell,
    "ssh": _check_ssh,
}


def _problems(section: str, values: Any) -> list[_Problem]:
    """Check one section's values (attributes of `values`); a value of the wrong type is one problem."""
    try:
        return _CHECKS[section](values)
    except (TypeError, AttributeError) as exc:
        return [(("*",), f"holds a value of the wrong type ({exc})")]


# -- Loading ------------------------------------------------------------------------


def home_dir(env: Mapping[str, str] = os.environ) -> Path:
    """Return Mahavishnu's home directory: `$MAHAVISHNU_HOME`, else `./.mahavishnu`, absolute."""
    return Path(env.get("MAHAVISHNU_HOME") or ".mahavishnu").expanduser().resolve()


def config_path(env: Mapping[str, str] = os.environ) -> Path:
    """Return the configuration file's path: `$MAHAVISHNU_CONFIG`, else `<home>/mahavishnu.toml`."""
    explicit = env.get("MAHAVISHNU_CONFIG")
    if explicit:
        return Path(explicit).expanduser().resolve()
    return home_dir(env) / CONFIG_FILE_NAME


def load_settings(env: Mapping[str, str] = os.environ) -> Settings:
    """Load the settings from `config_path(env)` and `env`, as every command does.

    Raises ConfigError as `load_config` does, and also when `$MAHAVISHNU_CONFIG` names a
    file that does not exist (a missing default file just means defaults).
    """
    path = config_path(env)
    if env.get("MAHAVISHNU_CONFIG") and not path.exists():
        raise ConfigError([f"MAHAVISHNU_CONFIG: {path} does not exist; create it or unset the variable"])
    return load_config(path, env)


# A merged raw value: (value, where it came from, came from the environment).
_Raw = tuple[Any, str, bool]


def load_config(path: Path | None, env: Mapping[str, str] = os.environ) -> Settings:
    """Return the settings of the TOML file at `path` overridden by `MAHAVISHNU_<SECTION>__<KEY>` variables.

    `path` None or a file that does not exist means defaults (plus the environment).
    Raises ConfigError: at once when the file cannot be read or is not valid TOML
    (naming the file and the line), otherwise with one message per wrong value, unknown
    section or key (with the nearest valid name) and bad variable (naming it).
    """
    problems: list[str] = []
    raw: dict[str, dict[str, _Raw]] = {section: {} for section in _KINDS}
    document = _read_toml(path) if path is not None else None
    if document:
        _take_file(document, str(path), raw, problems)
    _take_env(env, raw, problems)
    sections: dict[str, _Section] = {}
    for section, cls in _SECTIONS.items():
        values = _typed_section(section, raw[section], problems)
        if values is not None:
            sections[section] = cls(**values)
    if problems:
        raise ConfigError(problems)
    return msgspec.structs.replace(Settings(), **sections)


def _read_toml(path: Path) -> dict[str, Any] | None:
    try:
        with path.open("rb") as file:
            return tomllib.load(file)
    except FileNotFoundError:
        return None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{path}: not valid TOML: {exc}; fix that line"]) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError([f"{path}: not valid TOML: not UTF-8 text ({exc.reason} at byte {exc.start})"]) from exc
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read the configuration file: {exc.strerror or exc}"]) from exc


def _take_file(document: dict[str, Any], origin: str, raw: dict[str, dict[str, _Raw]], problems: list[str]) -> None:
    for name, table in document.items():
        if name not in _KINDS:
            if isinstance(table, dict):
                problems.append(f"{origin}: unknown section [{name}]{_near(name, list(_KINDS), '[{}]')}")
            else:
                problems.append(f"{origin}: unknown top-level key {name!r}; keys belong in a section{_home_of(name)}")
            continue
        if not isinstance(table, dict):
            problems.append(f"{origin}: {name} must be a section ([{name}]), got {table!r}")
            continue
        for key, value in table.items():
            if key in _KINDS[name]:
                raw[name][key] = (value, origin, False)
            else:
                hint = _home_of(key) or _near(key, list(_KINDS[name]), f"{name}.{{}}")
                problems.append(f"{origin}: unknown key {name}.{key}{hint}")


def _take_env(env: Mapping[str, str], raw: dict[str, dict[str, _Raw]], problems: list[str]) -> None:
    for var, text in sorted(env.items()):
        if not var.startswith(ENV_PREFIX):
            continue
        rest = var[len(ENV_PREFIX) :].lower()
        if "__" not in rest:  # MAHAVISHNU_HOME and friends; flag MAHAVISHNU_SERVER_PORT only
            section, _, key = rest.partition("_")
            if key in _KINDS.get(section, {}):
                problems.append(f"{var}: use two underscores between section and key: {_var(section, key)}")
            continue
        section, key = rest.split("__", 1)
        if section not in _KINDS:
            problems.append(f"{var}: unknown section {section!r}{_near(section, list(_KINDS), '{}')}")
        elif key not in _KINDS[section]:
            names = [_var(section, k) for k in _KINDS[section]]
            problems.append(f"{var}: unknown key {section}.{key}{_near(_var(section, key), names, '{}')}")
        else:
            raw[section][key] = (text, var, True)


def _typed_section(section: str, given: dict[str, _Raw], problems: list[str]) -> dict[str, Any] | None:
    """Convert and check one section's given values; None when any of them is wrong."""
    typed: dict[str, Any] = {}
    origins: dict[str, str] = {}
    failed: set[str] = set()
    for key, (value, origin, from_env) in given.items():
        kind = _KINDS[section][key]
        try:
            typed[key] = kind.from_env(value) if from_env else kind.from_file(value)
            origins[key] = origin
        except (ValueError, KeyError):
            problems.append(f"{origin}: {section}.{key} must be {kind.describe}, got {value!r}")
            failed.add(key)
    defaults = msgspec.structs.asdict(_SECTIONS[section]())
    checked = _problems(section, _Values({**defaults, **typed}))
    found = [(keys, problem) for keys, problem in checked if not failed.intersection(keys)]
    for keys, problem in found:
        origin = next((origins[k] for k in keys if k in origins), "defaults")
        problems.append(f"{origin}: {section}.{keys[0]} {problem}")
    return typed if not failed and not found else None


class _Values:
    """Attribute access to a dict of section values, for the checks."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.__dict__.update(values)


def _var(section: str, key: str) -> str:
    return f"{ENV_PREFIX}{section.upper()}__{key.upper()}"


def _near(name: str, options: list[str], template: str) -> str:
    close = difflib.get_close_matches(name, options, n=1, cutoff=0.6)
    if close:
        return f"; did you mean {template.format(close[0])}?"
    return "; valid: " + ", ".join(template.format(option) for option in options)


def _home_of(key: str) -> str:
    homes = [section for section, kinds in _KINDS.items() if key in kinds]
    return f"; did you mean {key} in [{homes[0]}]?" if homes else ""
