"""The MQTT bridge, run by `up` when [mqtt] port is set: commands out to MQTT devices, their reports in.

It holds two connections: the control services' (MESH: COMMANDS and EVENTS) and its own
identity in the MQTT account, over NATS (streams, sessions) and over MQTT (publishing).

Commands out. An MQTT device cannot pull from JetStream, so the bridge pulls for it, from
the same durable consumer an agent would use (device-<id> on COMMANDS, made at enrolment;
`cmd cancel` therefore works alike). It pulls only while the device's own MQTT session
(client id = device id) holds a QoS 1 subscription that covers its command topics
(mesh/cmd/<id>/# or /+; the bare mesh/cmd/<id> matches no command), i.e. while the
server has somewhere to keep a command for the device: a device that is offline with a
persistent session gets the command when it reconnects, one that never subscribed (or
only with a clean session) finds its commands waiting in COMMANDS. Each command is
published with QoS 1 on mesh/cmd/<id>/<command-id>, one at a time per device, and its
JetStream message is acknowledged only once the device took it: its PUBACK (seen as its
session's consumer acknowledging the message) or its report on the command. The
server's PUBACK to the bridge is not enough: a clean session of the same client id wipes
what the session held, and the command then goes back to COMMANDS (nak) and is
delivered again once the device subscribes again, within its time to live. A command
past its time to live is never delivered: the bridge records command.expired instead.
QoS 1 is at least once: a device may see a command twice and must go by its command_id.

Reports in. What MQTT devices publish on mesh/evt/device/<id>/<what> is kept by the MQTT
account's MQTT_IN stream (so nothing is lost while `up` is down); the bridge turns each
message into our event (mahavishnu.gateways.mqtt.devices.translate: the device id from the topic, never
from the body; a command report only for a command issued to that device), appends it
with a derived event id (a retranslation is deduplicated), then acknowledges it. A
message that cannot be translated is logged with its reason and dropped (term).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import threading
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import nats.errors
import nats.js.errors
import paho.mqtt.client as paho
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, RetentionPolicy, StorageType, StreamConfig
from paho.mqtt.enums import CallbackAPIVersion
from prometheus_client import CollectorRegistry, Counter, Gauge

from core import subjects
from core.errors import MahavishnuError
from core.events import CommandEvent, CommandExpired, CommandIssued, EventDecodeError, decode
from core.store import EventStore, Identity, connect
from core.store.acks import ERR_STREAM_NAME_IN_USE
from mahavishnu.gateways.mqtt import devices as mqtt

log = logging.getLogger("mahavishnu.mqtt")

# What an update's device is told beside its command: the artifact's link, length and digest.
Fetch = Callable[[CommandIssued], Awaitable[dict[str, object] | None]]

COMMANDS_STREAM = "COMMANDS"
IN_MAX_AGE_S = 7 * 86400.0  # reports wait this long for a bridge that is down
PUBACK_TIMEOUT_S = 10.0
KEEPALIVE_S = 30
FETCH_WAIT_S = 1.0
IN_PROGRESS_S = 5.0  # a command awaiting its device is reported in progress this often (below any ack wait)
RETRY_S = 0.5  # after a failed JetStream call (the server reloading its users makes a few)


async def _pause(stop: asyncio.Event, seconds: float) -> None:
    """Wait `seconds`, or less if `stop` is set meanwhile."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


class MqttMetrics:
    """What the bridge did, on up's /metrics.

    mahavishnu_mqtt_commands_total{outcome}   delivered (the device took it) | expired | retried (its session lost it)
    mahavishnu_mqtt_reports_total{outcome}    appended | dropped (could not be translated; the log says why)
    mahavishnu_mqtt_sessions                  MQTT devices whose session holds a QoS 1 subscription to commands
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.commands = Counter(
            "mahavishnu_mqtt_commands", "Commands the MQTT bridge handled, by outcome.", ["outcome"], registry=registry
        )
        self.reports = Counter(
            "mahavishnu_mqtt_reports",
            "MQTT device reports the bridge handled, by outcome.",
            ["outcome"],
            registry=registry,
        )
        self.sessions = Gauge(
            "mahavishnu_mqtt_sessions", "MQTT devices with a QoS 1 subscription to their commands.", registry=registry
        )


class MqttPublisher:
    """A paho-mqtt client (its own network thread) that publishes with QoS 1 and awaits the PUBACK.

    Given the listeners of every node of a cluster, it moves to the next one whenever its
    connection drops or cannot be made, so commands go out while any node serves MQTT.
    """

    def __init__(self, endpoints: Sequence[tuple[str, int]], identity: Identity, *, client_id: str) -> None:
        if not endpoints:
            raise ValueError("the bridge needs at least one MQTT listener")
        self.endpoints = tuple(endpoints)
        self._at = 0
        self._stopping = False  # our own disconnect: no next node
        self.host, self.port = self.endpoints[0]
        self._connected = threading.Event()
        self._refused: str | None = None
        client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv311)
        client.tls_set(ca_certs=str(identity.ca), certfile=str(identity.cert), keyfile=str(identity.key))
        client.reconnect_delay_set(min_delay=1, max_delay=10)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_connect_fail = self._on_connect_fail
        self.client = client

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if reason.is_failure:
            self._refused = str(reason)
        else:
            self._refused = None
            self._connected.set()
            log.info("the bridge is connected over MQTT", extra={"listener": f"{self.host}:{self.port}"})

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if self._connected.is_set() and not self._stopping:
            log.warning("the bridge lost its MQTT connection; reconnecting", extra={"reason": str(reason)})
        self._connected.clear()
        self._next_endpoint()

    def _on_connect_fail(self, client: Any, userdata: Any) -> None:
        self._next_endpoint()

    def _next_endpoint(self) -> None:
        """Reconnect to the next node's listener.

        paho refuses a new host while it still counts itself connecting or connected (its
        host setter), which it does in these callbacks; connect_async resets that state and
        takes the new address, and paho's loop then reconnects there after its delay.
        """
        if len(self.endpoints) == 1 or self._stopping:
            return
        self._at = (self._at + 1) % len(self.endpoints)
        self.host, self.port = self.endpoints[self._at]
        self.client.connect_async(self.host, self.port, keepalive=KEEPALIVE_S)

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    async def start(self, timeout: float = 10.0) -> None:
        """Connect; MqttError when the listener cannot be reached or refuses the bridge's certificate."""
        try:
            self.client.connect_async(self.host, self.port, keepalive=KEEPALIVE_S)
        except OSError as exc:
            raise mqtt.MqttError(f"cannot reach the MQTT listener {self.host}:{self.port}: {exc}") from exc
        self.client.loop_start()
        if not await asyncio.to_thread(self._connected.wait, timeout):
            self.stop()
            raise mqtt.MqttError(
                f"the MQTT listener {self.host}:{self.port} did not accept the bridge within {timeout:g} s"
                f" ({self._refused or 'no answer'}): check [mqtt] port and the server's log"
            )

    async def publish(self, topic: str, payload: bytes, timeout: float = PUBACK_TIMEOUT_S) -> bool:
        """Publish with QoS 1; True once the server acknowledged it (PUBACK), False otherwise."""
        if not self._connected.is_set():
            return False
        info = self.client.publish(topic, payload, qos=1)
        if info.rc != paho.MQTT_ERR_SUCCESS:
            return False
        with contextlib.suppress(RuntimeError, ValueError):
            await asyncio.to_thread(info.wait_for_publish, timeout)
        return info.is_published()

    def stop(self) -> None:
        self._stopping = True
        self.client.disconnect()
        self.client.loop_stop()


class MqttBridge:
    """See the module docstring. `run(stop)` until `stop` is set; a crash is for the supervisor to restart."""

    def __init__(
        self,
        store: EventStore,
        bridge: Client,
        publisher: MqttPublisher,
        devices: Callable[[], frozenset[str]],
        *,
        poll_s: float = 0.5,
        metrics: MqttMetrics | None = None,
        replicas: int = 1,
        fetch: Fetch | None = None,
    ) -> None:
        self.store = store
        self.fetch = fetch  # where a device fetches an update's artifact (up's HTTP door), if it serves them
        self.bridge = bridge
        self.publisher = publisher
        self.devices = devices  # the MQTT devices' ids, read again at every poll (enrolments come and go)
        self.poll_s = poll_s
        self.replicas = replicas  # of the MQTT_IN stream
        self.metrics = metrics or MqttMetrics(CollectorRegistry())
        self._delivering: dict[str, tuple[asyncio.Task[None], asyncio.Event]] = {}
        self._sessions: dict[str, frozenset[str]] = {}  # the last sessions(): device -> its consumers of commands
        self._closing = asyncio.Event()  # run() is ending
        self._reports: dict[tuple[str, str], asyncio.Event] = {}  # (device, command id) delivered, awaiting the device

    async def run(self, stop: asyncio.Event) -> None:
        self._closing.clear()  # run again after a crash (up's supervisor)
        while not stop.is_set():
            try:
                await self._ensure_in_stream()
                break
            except (nats.errors.Error, TimeoutError) as exc:  # JetStream is briefly away while the server reloads
                log.warning("cannot set up the MQTT_IN stream yet; retrying", extra={"reason": repr(exc)})
                await _pause(stop, RETRY_S)
        translating = asyncio.create_task(self._translate(stop), name="mqtt-translate")
        try:
            while not stop.is_set():
                await self._follow_sessions()
                if translating.done():
                    translating.result()  # a crash of the translator is the bridge's crash
                await _pause(stop, self.poll_s)
        finally:
            # nats-py turns a cancellation during a request into its own error, which the loops
            # retry: each loop also ends on its event (halt, or _closing for a command awaiting its device).
            self._closing.set()
            translating.cancel()
            for task, halt in self._delivering.values():
                halt.set()
                task.cancel()
            await asyncio.gather(translating, *(t for t, _ in self._delivering.values()), return_exceptions=True)
            self._delivering.clear()

    async def _ensure_in_stream(self) -> None:
        js = self.bridge.jetstream()
        config = StreamConfig(
            name=mqtt.IN_STREAM,
            description="What MQTT devices published, until the bridge turned it into events",
            subjects=[f"{subjects.EVENTS_PREFIX}.device.>"],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            max_age=IN_MAX_AGE_S,
            # As many copies as the mesh's own streams: in a cluster, reports keep coming in while a node is down.
            num_replicas=self.replicas,
        )
        try:
            await js.add_stream(config)
        except nats.js.errors.BadRequestError as exc:
            if exc.err_code != ERR_STREAM_NAME_IN_USE:
                raise
            await js.update_stream(config)  # e.g. a mesh that became a cluster: one replica to three
        await js.add_consumer(
            mqtt.IN_STREAM,
            ConsumerConfig(
                durable_name=mqtt.IN_CONSUMER,
                ack_policy=AckPolicy.EXPLICIT,
                deliver_policy=DeliverPolicy.ALL,
                ack_wait=30,
            ),
        )

    # --- commands out --------------------------------------------------------

    async def sessions(self) -> dict[str, frozenset[str]]:
        """The MQTT devices whose own session takes commands, each with the $MQTT_msgs consumers that receive them."""
        js = self.bridge.jetstream()
        consumers: list[tuple[str, str]] = []
        listed = 0
        while True:  # the server lists 256 consumers at a time
            try:
                page = await js.consumers_info(mqtt.SESSIONS_STREAM, offset=listed or None)
            except nats.js.errors.NotFoundError:
                return {}  # no MQTT client has subscribed with QoS 1 yet
            for consumer in page:
                config = consumer.config
                filters = [config.filter_subject] if config.filter_subject else list(config.filter_subjects or [])
                consumers += [(consumer.name, subject) for subject in filters]
            listed += len(page)
            if len(page) < 256:
                break
        return mqtt.command_sessions(consumers, self.devices())

    async def _follow_sessions(self) -> None:
        try:
            self._sessions = await self.sessions()
        except (nats.errors.Error, TimeoutError) as exc:  # e.g. JetStream busy while the server reloads its users
            log.warning("cannot list the MQTT sessions; keeping the last known", extra={"reason": repr(exc)})
            return
        wanted = self._sessions.keys()
        self.metrics.sessions.set(len(wanted))
        for device in wanted - self._delivering.keys():
            halt = asyncio.Event()
            task = asyncio.create_task(self._deliver(device, halt), name=f"mqtt-deliver-{device}")
            self._delivering[device] = (task, halt)
            log.info("delivering commands", extra={"device": device})
        for device in list(self._delivering):
            task, halt = self._delivering[device]
            if device not in wanted:
                halt.set()  # ends after the fetch in flight; its command is not lost, only not acknowledged
            if task.done():
                del self._delivering[device]
                if not task.cancelled() and task.exception() is not None:
                    log.warning(
                        "delivering commands failed; retrying",
                        extra={"device": device, "reason": repr(task.exception())},
                    )

    async def _deliver(self, device: str, halt: asyncio.Event) -> None:
        psub = await self.store.nc.jetstream().pull_subscribe_bind(
            durable=subjects.device_consumer(device), stream=COMMANDS_STREAM
        )
        try:
            while not halt.is_set():
                if not self.publisher.connected:  # do not spend the command's deliveries (max_deliver) meanwhile
                    await _pause(halt, RETRY_S)
                    continue
                try:
                    messages = await psub.fetch(1, timeout=FETCH_WAIT_S)
                except (nats.errors.TimeoutError, TimeoutError):
                    continue
                except nats.errors.Error as exc:
                    log.warning("fetching commands failed; retrying", extra={"device": device, "reason": repr(exc)})
                    await _pause(halt, RETRY_S)
                    continue
                for message in messages:
                    await self.deliver(device, message)
        finally:
            with contextlib.suppress(nats.errors.Error):
                await psub.unsubscribe()

    async def deliver(self, device: str, message: Msg) -> None:
        """Publish one command to its device's session with QoS 1; acknowledge it once the device has.

        The server's PUBACK only says the command is kept in the session, which a clean
        session of the same client id wipes; so the JetStream message stays in progress until
        the device acknowledges the command (its PUBACK, seen as its session's consumer having
        acknowledged it, or a report on it), and goes back (nak) if the session loses it first.
        """
        try:
            command = decode(message.data)
        except EventDecodeError as exc:
            log.warning("dropped a malformed command", extra={"device": device, "reason": exc.reason})
            await message.term()
            return
        if not isinstance(command, CommandIssued) or command.device_id != device:
            log.warning("dropped what is not a command for this device", extra={"device": device})
            await message.term()
            return
        if mqtt.expired(command, datetime.now(UTC)):
            await self._expire(command, message)
            return
        consumers = self._sessions.get(device, frozenset())
        key = (device, command.command_id)
        reported = self._reports[key] = asyncio.Event()  # set by the translator on the device's report
        try:
            try:
                before = (await self.bridge.jetstream().stream_info(mqtt.SESSIONS_STREAM)).state.last_seq
            except (nats.errors.Error, TimeoutError) as exc:  # JetStream busy, e.g. electing after a node died
                log.warning("cannot read the MQTT sessions; the command goes back", extra={"reason": repr(exc)})
                await message.nak(delay=1)
                self.metrics.commands.labels("retried").inc()
                return
            topic = mqtt.command_topic(device, command.command_id)
            fetch = await self.fetch(command) if self.fetch is not None else None
            kept = bool(consumers) and await self.publisher.publish(topic, mqtt.command_payload(command, fetch))
            outcome = await self._until_taken(command, message, consumers, before, reported) if kept else "lost"
        finally:
            self._reports.pop(key, None)
        if outcome == "expired":
            await self._expire(command, message)
        elif outcome == "lost":
            log.warning("command not kept by the device's session; retrying", extra={"command_id": command.command_id})
            await message.nak(delay=1)
            self.metrics.commands.labels("retried").inc()
        else:
            await message.ack()
            self.metrics.commands.labels("delivered").inc()
            log.info("command delivered", extra={"device": device, "command_id": command.command_id, "by": outcome})

    async def _until_taken(
        self, command: CommandIssued, message: Msg, consumers: frozenset[str], before: int, reported: asyncio.Event
    ) -> str:
        """How the device took the command ("reported", "acknowledged"), or why not ("lost", "expired")."""
        js = self.bridge.jetstream()
        touched = asyncio.get_running_loop().time()
        while not self._closing.is_set():
            if reported.is_set():
                return "reported"
            if mqtt.expired(command, datetime.now(UTC)):
                return "expired"
            states, unsure = [], False
            for name in consumers:  # the consumers of the session the command was kept in, not newer ones
                try:
                    states.append(await js.consumer_info(mqtt.SESSIONS_STREAM, name))
                except nats.js.errors.NotFoundError:
                    pass
                except (nats.errors.Error, TimeoutError):
                    unsure = True  # JetStream busy (an election after a node died): ask again
            if not states and not unsure:
                return "lost"  # a clean session of the device's client id (or an unsubscribe) wiped it
            for info in states:
                delivered = info.delivered.stream_seq if info.delivered else 0
                if mqtt.acknowledged(delivered, info.num_pending or 0, info.num_ack_pending or 0, before):
                    return "acknowledged"
            now = asyncio.get_running_loop().time()
            if now - touched >= IN_PROGRESS_S:  # COMMANDS would otherwise hand it out again after its ack wait
                await message.in_progress()
                touched = now
            await _pause(reported, self.poll_s)
        return "lost"  # the bridge stops: the command goes back to COMMANDS for the next one

    async def _expire(self, command: CommandIssued, message: Msg) -> None:
        await self.store.append(
            CommandExpired(
                command_id=command.command_id,
                device_id=command.device_id,
                actor=mqtt.BRIDGE_ID,
                correlation_id=command.correlation_id,
                causation_id=command.event_id,
            )
        )
        await message.ack()
        self.metrics.commands.labels("expired").inc()

    # --- reports in ----------------------------------------------------------

    async def _translate(self, stop: asyncio.Event) -> None:
        psub = await self.bridge.jetstream().pull_subscribe_bind(durable=mqtt.IN_CONSUMER, stream=mqtt.IN_STREAM)
        try:
            while not stop.is_set():
                try:
                    messages = await psub.fetch(50, timeout=FETCH_WAIT_S)
                except (nats.errors.TimeoutError, TimeoutError):
                    continue
                except nats.errors.Error as exc:
                    log.warning("fetching MQTT reports failed; retrying", extra={"reason": repr(exc)})
                    await _pause(stop, RETRY_S)
                    continue
                for message in messages:
                    await self.translate(message)
        finally:
            with contextlib.suppress(nats.errors.Error):
                await psub.unsubscribe()

    async def translate(self, message: Msg) -> None:
        """Turn one device report into our event and append it; drop (term) what cannot be translated."""
        meta = message.metadata
        try:
            device, what = mqtt.parse_subject(message.subject)
            event = mqtt.translate(
                device, what, message.data, at=meta.timestamp, source=f"{mqtt.IN_STREAM}:{meta.sequence.stream}"
            )
            if isinstance(event, CommandEvent) and not await self.store.last_subject_sequence(
                subjects.command(device, event.command_id)
            ):
                raise mqtt.MqttPayloadError(f"{device} reported on command {event.command_id}, never issued to it")
        except mqtt.MqttPayloadError as exc:
            log.warning("dropped a report from an MQTT device", extra={"subject": message.subject, "reason": str(exc)})
            await message.term()
            self.metrics.reports.labels("dropped").inc()
            return
        await self.store.append(event)
        await message.ack()
        self.metrics.reports.labels("appended").inc()
        if isinstance(event, CommandEvent) and (waiting := self._reports.get((device, event.command_id))):
            waiting.set()  # the device has the command: its delivery is done


async def open_bridge(
    store: EventStore,
    identity: Identity,
    *,
    host: str,
    port: int,
    devices: Callable[[], frozenset[str]],
    metrics: MqttMetrics | None = None,
    listeners: int = 1,
    replicas: int = 1,
    fetch: Fetch | None = None,
) -> MqttBridge:
    """Connect the bridge's identity over NATS and over MQTT (`host`:`port`, or the `listeners` on `port` to
    `port` + listeners - 1, one per node of `up --cluster`); its MQTT_IN stream gets `replicas` copies.

    Raises StoreUnavailable or MqttError (MahavishnuError) saying what failed.
    """
    bridge = await connect(identity, name="mahavishnu-mqtt-bridge")
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"  # listening everywhere: loopback is the address this machine's clients use
    # A client id of its own each run: a device that took the bridge's id would take over its session.
    endpoints = [(host, port + k) for k in range(listeners)]
    publisher = MqttPublisher(endpoints, identity, client_id=f"mahavishnu-mqtt-bridge-{secrets.token_hex(6)}")
    try:
        await publisher.start()
    except MahavishnuError:
        await bridge.close()
        raise
    return MqttBridge(store, bridge, publisher, devices, metrics=metrics, replicas=replicas, fetch=fetch)


async def close_bridge(bridge: MqttBridge) -> None:
    await asyncio.to_thread(bridge.publisher.stop)
    if not bridge.bridge.is_closed:
        with contextlib.suppress(OSError):
            await bridge.bridge.close()
