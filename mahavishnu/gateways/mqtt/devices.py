"""MQTT-only devices (pure, but for the small registry file at the end): listener, users, topics, payloads.

A device that speaks only MQTT 3.1.1 connects to nats-server's MQTT listener with its
client certificate; up's identity service (the auth callout, ADR 0012) admits it there
only, and only under its own client id (client_id_refusal). Its user lives in an account
of its own, MQTT, so that:
  - its command topics (mesh/cmd/<id>/#, NATS mesh.cmd.<id>.>) are not the MESH account's
    COMMANDS subjects: what the bridge publishes to a device is never captured as a new
    command, and the COMMANDS stream's plain deliveries never reach a device at QoS 0;
  - the server's MQTT session streams ($MQTT_msgs, $MQTT_sess, ...) live apart from ours.

An MQTT device D may only
  - publish under its own event topics:   mesh/evt/device/D/<what>   (mesh.evt.device.D.>)
  - subscribe to its own command topics:  mesh/cmd/D/#               (mesh.cmd.D and mesh.cmd.D.>;
                                                                      an MQTT '#' also matches the parent)
and connect over MQTT only. The server lets MQTT clients use its internal $MQTT.> subjects
for their sessions without listing them here, yet refuses a device's own publish or
subscription on $MQTT/... topics (nats-server 2.15; tests/mahavishnu/gateways/mqtt/test_bridge.py checks both).

The bridge (mahavishnu.gateways.mqtt.bridge, run by `up`) is the only identity in both worlds:
it delivers each MQTT device's commands from the device's durable consumer in COMMANDS
to its MQTT session with QoS 1, and turns what the device publishes (recorded in the
MQTT account's MQTT_IN stream) into our events. Payloads, documented in the README:

  command to a device, on mesh/cmd/<id>/<command-id> (QoS 1):
      {"command_id": "c-...", "name": "ping", "args": {}, "timeout_s": 10, "expires_at": "<ISO 8601>"}
  from a device, on mesh/evt/device/<id>/<what>:
      telemetry   {"temp_c": 41.5, ...}                             -> device.telemetry.v1
      heartbeat   {"uptime_s": 12.5}                                -> device.heartbeat.v1
      reported    {"rate": 5, ...}                                  -> device.reported.v1
      command     {"command_id": "c-...", "state": "succeeded", "result": {...}}
                  state: accepted | running | succeeded | failed (+ "error") | rejected (+ "reason")
                                                                    -> command.<state>.v1
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import uuid
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

from certs import IssuedRecord, certificate_uri
from core import subjects
from core.commands import CommandState, expires_at, past_ttl
from core.errors import MahavishnuError
from core.events import (
    CommandAccepted,
    CommandFailed,
    CommandIssued,
    CommandRejected,
    CommandRunning,
    CommandSucceeded,
    DeviceHeartbeat,
    Event,
    ReportedState,
    TelemetryReported,
)
from mahavishnu.runtime.natsconf import User

MQTT_ACCOUNT = "MQTT"
BRIDGE_ID = "mqtt-bridge"  # a control-kind certificate whose user lives in the MQTT account
IN_STREAM = "MQTT_IN"  # in the MQTT account: what MQTT devices publish, until the bridge translated it
IN_CONSUMER = "mahavishnu-translator"
SESSIONS_STREAM = "$MQTT_msgs"  # nats-server's own: one consumer per QoS 1 subscription of a session
REGISTRY_FILE = "mqtt-devices.json"
# What an MQTT device may report about a command (the states' wire strings), and the event each becomes.
COMMAND_STATES = (
    CommandState.ACCEPTED,
    CommandState.RUNNING,
    CommandState.SUCCEEDED,
    CommandState.FAILED,
    CommandState.REJECTED,
)
_ROLE = re.compile(r"[A-Za-z0-9_\-]{1,64}")  # the <name> of a client id <device id>/<name>
_HASH_DIGITS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"  # nats-server's base 62
_EVENT_IDS = uuid.UUID("6d616861-7669-4d51-9454-000000000001")  # namespace of derived event ids


class MqttError(MahavishnuError):
    """An MQTT device or the MQTT listener could not be set up or served."""


class MqttPayloadError(MqttError):
    """What an MQTT device published cannot be turned into an event; the message says why."""


# -- Server configuration --------------------------------------------------------------


def listener_block(host: str, port: int, *, cert: Path, key: str | Path, ca: Path, replicas: int = 0) -> str:
    """The nats-server `mqtt {}` block (pure): TLS with client certificates mapped to users, as on port 4222.

    `port` 0 renders no listener; -1 lets the server pick a free port (tests). `replicas`
    (a cluster's) is how many copies the server keeps of its MQTT streams (sessions, kept
    messages): left to itself it counts the routes of the node, 2 in a cluster of three,
    and a session stream of two replicas stops answering when one node is down (measured:
    "loading session record: JetStream system temporarily unavailable" until it is back).
    """
    if port == 0:
        return "# no MQTT listener ([mqtt] port = 0)"
    return "\n".join(
        [
            "mqtt {",
            f"  host: {json.dumps(host)}",
            f"  port: {port}",
            *([f"  stream_replicas: {replicas}"] if replicas else []),
            "  tls {",
            f"    cert_file: {json.dumps(str(cert))}",
            f"    key_file: {json.dumps(str(key))}",
            f"    ca_file: {json.dumps(str(ca))}",
            "    verify_and_map: true",
            "    timeout: 5",
            "  }",
            "}",
        ]
    )


def device_user(device_id: str, serial: int) -> User:
    """What an MQTT device may do (the identity service grants it in the MQTT account): its own topics, MQTT only."""
    subjects.token(device_id, what="device id")
    return User(
        name=certificate_uri(serial),
        publish_allow=(f"{subjects.EVENTS_PREFIX}.device.{device_id}.>",),
        subscribe_allow=(f"{subjects.COMMANDS_PREFIX}.{device_id}", f"{subjects.COMMANDS_PREFIX}.{device_id}.>"),
        connection_types=("MQTT",),
    )


def client_id_refusal(device_id: str, client_id: str) -> str | None:
    """Why `device_id`'s certificate may not connect with this MQTT client id, or None when it may (pure).

    The client id names the session, and a connection with a session's client id takes it
    over (a clean one wipes it). So a device's client id is its own id: that session is the
    one that takes its commands. `<id>/<name>` (a device id holds no "/") is also the
    device's, for connections beside it, e.g. a publisher that must not take over the
    command session. Any other id, another device's above all, is refused.
    """
    if client_id == device_id:
        return None
    role = client_id.removeprefix(device_id + "/")
    if role != client_id and _ROLE.fullmatch(role):
        return None
    shown = client_id if len(client_id) <= 64 else client_id[:64] + "..."
    return (
        f"device:{device_id} connected to MQTT as client id {shown!r}: use its own id, -i {device_id}"
        f" (or {device_id}/<name>, e.g. {device_id}/pub, for a connection beside its command session)"
    )


def bridge_user(serial: int) -> User:
    """The bridge: unrestricted within the MQTT account (it is control), over NATS and MQTT."""
    return User(name=certificate_uri(serial), connection_types=("STANDARD", "MQTT"))


def is_bridge_record(record: IssuedRecord) -> bool:
    """Whether this certificate is the bridge's, whose user belongs to the MQTT account rather than MESH."""
    return record.kind == "control" and record.identity == BRIDGE_ID


def mqtt_users(records: Iterable[IssuedRecord], now: datetime) -> tuple[User, ...]:
    """The MQTT account's configured users (pure): the bridge's live certificates. Devices are admitted by the
    identity service, which checks their client id (ADR 0008)."""
    return tuple(bridge_user(r.serial) for r in records if r.is_live(now) and is_bridge_record(r))


# -- Topics ---------------------------------------------------------------------------


def command_topic(device_id: str, command_id: str) -> str:
    """The MQTT topic a command reaches its device on."""
    return subjects.command(device_id, command_id).replace(".", "/")


def session_hash(client_id: str) -> str:
    """The 8 characters nats-server names a session's consumers by (pure): its getHash(client id).

    Each QoS 1 subscription of the session with client id C is a consumer of $MQTT_msgs
    named `<session_hash(C)>_<nuid>` (server/mqtt.go, events.go: SHA-256, each of the first
    8 bytes mod 62 as a digit). The bridge finds a device's own session by it: only the
    session whose client id is the device id takes its commands.
    """
    digest = hashlib.sha256(client_id.encode()).digest()
    return "".join(_HASH_DIGITS[b % len(_HASH_DIGITS)] for b in digest[:8])


def covers_commands(filter_subject: str, device_id: str) -> bool:
    """Whether a $MQTT_msgs consumer's filter receives every command of `device_id` (pure).

    A command goes to mesh/cmd/<id>/<command-id>: `mesh/cmd/<id>/#` and `mesh/cmd/<id>/+`
    cover it, the bare `mesh/cmd/<id>` (granted, it is within the device's topics) does not.
    """
    prefix = f"$MQTT.msgs.{subjects.COMMANDS_PREFIX}.{device_id}."
    return filter_subject in (prefix + "*", prefix + ">")


def command_sessions(consumers: Iterable[tuple[str, str]], device_ids: Iterable[str]) -> dict[str, frozenset[str]]:
    """For each device whose own session takes commands, the names of its consumers that receive them (pure).

    `consumers` are (name, filter subject) of $MQTT_msgs' consumers. A device's own session
    is the one whose client id is the device id (the callout refuses any other client id
    for a subscribing connection), and it takes commands only with a QoS 1 subscription
    that covers them (covers_commands).
    """
    listed = list(consumers)
    found: dict[str, frozenset[str]] = {}
    for device in device_ids:
        own = session_hash(device) + "_"
        names = frozenset(n for n, f in listed if n.startswith(own) and covers_commands(f, device))
        if names:
            found[device] = names
    return found


def acknowledged(delivered_seq: int, pending: int, ack_pending: int, before: int) -> bool:
    """Whether a session's consumer of a device's commands has had the device acknowledge the newest one (pure).

    The bridge is the only publisher on a device's command topics and keeps one command in
    its session at a time, so everything this consumer received after `before` (the last
    sequence of $MQTT_msgs before the publish) is that command: delivered past it, with
    nothing pending or unacknowledged, means the device's PUBACK reached the server.
    """
    return delivered_seq > before and pending == 0 and ack_pending == 0


# -- Payloads -------------------------------------------------------------------------


def command_payload(command: CommandIssued, fetch: dict[str, object] | None = None) -> bytes:
    """What a device receives for a command (pure): the request, and when it stops being worth running.

    `fetch`: for an update, where the device fetches the artifact and what its bytes must be
    (mahavishnu.updates.door.ArtifactDoor.fetch_for): an MQTT device cannot read the bucket.
    """
    payload: dict[str, object] = {
        "command_id": command.command_id,
        "name": command.name,
        "args": command.args,
        "timeout_s": command.timeout_s,
        "expires_at": expires_at(command.occurred_at, command.ttl_s).isoformat(),
    }
    if fetch is not None:
        payload["fetch"] = fetch
    return json.dumps(payload, separators=(",", ":")).encode()


def expired(command: CommandIssued, now: datetime) -> bool:
    """Whether the command's time to live has passed: the bridge then records it expired, as an agent would."""
    return past_ttl(command.occurred_at, command.ttl_s, now)


def derived_event_id(*parts: str) -> str:
    """A stable event id (pure): the same report translated twice appends once (Nats-Msg-Id)."""
    return uuid.uuid5(_EVENT_IDS, "\x1f".join(parts)).hex


def parse_subject(subject: str) -> tuple[str, str]:
    """(device id, what) of `mesh.evt.device.<id>.<what>`; MqttPayloadError for anything else."""
    parts = subject.split(".")
    if len(parts) != 5 or parts[:3] != ["mesh", "evt", "device"]:
        raise MqttPayloadError(f"{subject!r}: publish on mesh/evt/device/<your id>/<what>, one level for <what>")
    return parts[3], parts[4]


def translate(device_id: str, what: str, payload: bytes, *, at: datetime, source: str) -> Event:
    """The event a device's MQTT message stands for (pure). The device id comes from the topic, never the body.

    `source` names the message (stream and sequence) so that translating it again gives the
    same event id. Raises MqttPayloadError saying what was wrong and what is expected.
    """
    try:
        body = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MqttPayloadError(f"{what} from {device_id} is not JSON ({exc})") from None
    if not isinstance(body, dict):
        raise MqttPayloadError(f"{what} from {device_id} must be a JSON object, got {type(body).__name__}")
    common: dict[str, Any] = {"device_id": device_id, "actor": device_id, "occurred_at": at}
    if what == "telemetry":
        metrics = {k: v for k, v in body.items() if isinstance(v, int | float) and not isinstance(v, bool)}
        if len(metrics) != len(body) or not metrics:
            raise MqttPayloadError(
                f'telemetry from {device_id} must be a non-empty object of numbers, e.g. {{"temp_c": 41.5}}'
            )
        values = {k: float(v) for k, v in metrics.items()}
        return TelemetryReported(metrics=values, event_id=derived_event_id(source), **common)
    if what == "heartbeat":
        uptime = body.get("uptime_s", 0.0)
        if not isinstance(uptime, int | float) or isinstance(uptime, bool):
            raise MqttPayloadError(f"heartbeat from {device_id}: uptime_s must be a number of seconds")
        return DeviceHeartbeat(uptime_s=float(uptime), event_id=derived_event_id(source), **common)
    if what == "reported":
        return ReportedState(state=body, event_id=derived_event_id(source), **common)
    if what == "command":
        return _command_event(device_id, body, common)
    raise MqttPayloadError(
        f"{device_id} published on mesh/evt/device/{device_id}/{what}: use telemetry, heartbeat, reported or command"
    )


def _command_event(device_id: str, body: dict[str, Any], common: dict[str, Any]) -> Event:
    command_id, state = body.get("command_id"), body.get("state")
    if not isinstance(command_id, str) or not command_id:
        raise MqttPayloadError(f'a command report from {device_id} needs its "command_id"')
    try:
        subjects.token(command_id, what="command id")
    except ValueError as exc:
        raise MqttPayloadError(str(exc)) from None
    if state not in COMMAND_STATES:
        raise MqttPayloadError(
            f'command {command_id} from {device_id}: "state" must be one of {", ".join(COMMAND_STATES)}, got {state!r}'
        )
    # One event per (command, state): a report sent twice (QoS 1 may) is appended once.
    fields = {**common, "command_id": command_id, "event_id": derived_event_id(device_id, command_id, state)}
    if state == CommandState.ACCEPTED:
        return CommandAccepted(**fields)
    if state == CommandState.RUNNING:
        return CommandRunning(**fields)
    if state == CommandState.SUCCEEDED:
        return CommandSucceeded(result=body.get("result"), **fields)
    if state == CommandState.FAILED:
        return CommandFailed(error=str(body.get("error") or "failed (the device gave no reason)"), **fields)
    return CommandRejected(reason=str(body.get("reason") or "rejected (the device gave no reason)"), **fields)


# -- The registry of MQTT devices (a file in the state directory, like the CA's) ----------


def registered(root: Path) -> frozenset[str]:
    """The ids of the devices enrolled with --transport mqtt."""
    try:
        return frozenset(json.loads((root / REGISTRY_FILE).read_text()))
    except FileNotFoundError:
        return frozenset()
    except (ValueError, TypeError) as exc:
        raise MqttError(f"{root / REGISTRY_FILE} is damaged ({exc}): restore it from a backup") from exc


def register(root: Path, device_id: str) -> None:
    """Record `device_id` as an MQTT device (before its users are written)."""
    ids = sorted(registered(root) | {device_id})
    tmp = root / (REGISTRY_FILE + ".tmp")
    tmp.write_text(json.dumps(ids) + "\n")
    os.replace(tmp, root / REGISTRY_FILE)
