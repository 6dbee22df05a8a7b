"""MQTT-only devices on a real nats-server's MQTT listener, with real TLS, mosquitto_pub/mosquitto_sub and paho-mqtt.

The bridge runs in the test's event loop, as `up` runs it; the devices are real MQTT
clients: the mosquitto command-line tools as processes, and paho-mqtt in its own thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nats.js.errors
import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from certs import CertificateAuthority
from core import subjects
from core.errors import StoreUnavailable
from core.events import CommandExpired, TelemetryReported
from core.store import EventStore, Identity, connect
from mahavishnu.control import commands, devices
from mahavishnu.gateways.mqtt import bridge as bridging
from mahavishnu.gateways.mqtt import devices as mqtt
from tests.harness import Mesh, start_mesh
from tests.outcomes import follow_outcome
from tests.tools import tool
from tests.waiting import eventually, eventually_async, wait_until


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    running = start_mesh(tmp_path_factory.mktemp("mqtt-mesh"), mqtt_port=-1)
    yield running
    running.stop()


@contextlib.asynccontextmanager
async def running_bridge(mesh: Mesh, store: EventStore) -> AsyncIterator[bridging.MqttBridge]:
    """The MQTT bridge of `mesh`, running (it looks for new devices every 0.2 s) until the block ends."""
    opened = await bridging.open_bridge(
        store,
        mesh.home.mqtt_bridge_identity(mesh.settings, mesh.port),
        host="127.0.0.1",
        port=mesh.mqtt_port,
        devices=lambda: mqtt.registered(mesh.home.root),
    )
    opened.poll_s = 0.2
    stop = asyncio.Event()
    running = asyncio.create_task(opened.run(stop))
    yield opened
    stop.set()
    await running
    await bridging.close_bridge(opened)


@pytest.fixture
async def bridge(mesh: Mesh, store: EventStore) -> AsyncIterator[bridging.MqttBridge]:
    async with running_bridge(mesh, store) as opened:
        yield opened


async def kept_in_session(bridge: bridging.MqttBridge, device: str, command_id: str) -> bool:
    """Whether the server keeps this command in the device's MQTT session ($MQTT_msgs)."""
    subject = f"$MQTT.msgs.{subjects.command(device, command_id)}"
    try:
        await bridge.bridge.jetstream().get_last_msg(mqtt.SESSIONS_STREAM, subject)
    except nats.js.errors.NotFoundError:
        return False
    return True


async def pending_commands(store: EventStore, device: str) -> tuple[int, int]:
    """(not yet handed out, handed out but not acknowledged) of the device's consumer in COMMANDS."""
    info = await store.nc.jetstream().consumer_info("COMMANDS", subjects.device_consumer(device))
    return info.num_pending, info.num_ack_pending


def reloads(mesh: Mesh) -> int:
    return sum("Reloaded server configuration" in line for line in mesh.server.recent)


async def enroll_mqtt(mesh: Mesh, store: EventStore, folder: Path, device_id: str) -> Path:
    """Enrol an MQTT device: the identity service admits it from now on, no configuration changes."""
    before = reloads(mesh)
    await devices.enroll(mesh.home, mesh.settings, store, device_id, out_dir=folder, transport="mqtt")
    assert reloads(mesh) == before
    return folder


def tls_args(mesh: Mesh, folder: Path, *, cert: bool = True) -> list[str]:
    args = ["--cafile", str(mesh.home.ca_dir / "ca.pem"), "-h", "127.0.0.1", "-p", str(mesh.mqtt_port)]
    if cert:
        args += ["--cert", str(folder / "cert.pem"), "--key", str(folder / "key.pem")]
    return args


def mosquitto_pub(mesh: Mesh, folder: Path, client_id: str, topic: str, body: Any, **kw: bool) -> int:
    args = [tool("mosquitto_pub"), *tls_args(mesh, folder, **kw), "-i", client_id, "-q", "1", "-t", topic]
    done = subprocess.run([*args, "-m", json.dumps(body)], capture_output=True, text=True, timeout=30)
    return done.returncode


@dataclass
class PahoDevice:
    """An MQTT device on paho-mqtt: what it received, with which QoS, and how its subscriptions were answered."""

    client: paho.Client
    received: list[tuple[str, int, dict[str, Any]]] = field(default_factory=list)
    granted: list[bool] = field(default_factory=list)  # one per SUBACK: True unless refused
    connected: threading.Event = field(default_factory=threading.Event)
    disconnected: threading.Event = field(default_factory=threading.Event)
    answer: str | None = None  # reply to each command with this state

    def subscribe(self, topic: str) -> None:
        answers = len(self.granted)
        self.client.subscribe(topic, qos=1)
        wait_until(lambda: len(self.granted) > answers, timeout=10, what=f"the SUBACK of {topic}")

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def paho_device(mesh: Mesh, folder: Path, client_id: str, *, answer: str | None = None) -> PahoDevice:
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv311, clean_session=False)
    client.tls_set(
        ca_certs=str(mesh.home.ca_dir / "ca.pem"), certfile=str(folder / "cert.pem"), keyfile=str(folder / "key.pem")
    )
    device = PahoDevice(client, answer=answer)

    def on_connect(c: Any, u: Any, flags: Any, reason: Any, props: Any) -> None:
        if not reason.is_failure:
            device.connected.set()

    def on_disconnect(c: Any, u: Any, flags: Any, reason: Any, props: Any) -> None:
        device.disconnected.set()

    def on_subscribe(c: Any, u: Any, mid: int, reasons: Any, props: Any) -> None:
        device.granted.extend(not r.is_failure for r in reasons)

    def on_message(c: Any, u: Any, message: paho.MQTTMessage) -> None:
        body = json.loads(message.payload)
        device.received.append((message.topic, message.qos, body))
        if device.answer is not None:
            device_id = message.topic.split("/")[2]
            report = {"command_id": body["command_id"], "state": device.answer, "result": {"pong": True}}
            c.publish(f"mesh/evt/device/{device_id}/command", json.dumps(report), qos=1)

    client.on_connect, client.on_disconnect = on_connect, on_disconnect
    client.on_subscribe, client.on_message = on_subscribe, on_message
    client.reconnect_delay_set(min_delay=30, max_delay=60)  # a refused reconnection must not hide the drop
    client.connect("127.0.0.1", mesh.mqtt_port)
    client.loop_start()
    wait_until(device.connected.is_set, timeout=10, what=f"{client_id} to connect over MQTT")
    return device


async def test_telemetry_lands_in_events_and_the_devices_read_model(
    mesh: Mesh, store: EventStore, bridge: bridging.MqttBridge, tmp_path: Path
) -> None:
    from projections.devices import Devices
    from projections.queries import DeviceGet, ReadModels, devices_get
    from projections.runner import ProjectionRunner

    folder = await enroll_mqtt(mesh, store, tmp_path / "therm", "therm-1")
    topic = "mesh/evt/device/therm-1/telemetry"
    assert await asyncio.to_thread(mosquitto_pub, mesh, folder, "therm-1", topic, {"temp_c": 41.5}) == 0

    async def landed() -> bool:
        event = await store.last_event(subjects.device_event("therm-1", "telemetry"))
        return isinstance(event, TelemetryReported) and event.metrics == {"temp_c": 41.5}

    await eventually_async(landed, timeout=20, what="the telemetry in the EVENTS stream")
    event = await store.last_event(subjects.device_event("therm-1", "telemetry"))
    assert event is not None and event.actor == "therm-1"

    key = "cd" * 32
    runner = ProjectionRunner(Devices(), store, directory=tmp_path / "models", key=key)
    await runner.open()
    try:
        await runner.catch_up()
        device = await devices_get(ReadModels(tmp_path / "models", key), DeviceGet(id="therm-1"))
    finally:
        await runner.close()
    assert device["telemetry"]["temp_c"]["value"] == 41.5, device


async def test_a_command_reaches_the_device_with_qos1_and_its_result_completes_it(
    mesh: Mesh, store: EventStore, bridge: bridging.MqttBridge, tmp_path: Path
) -> None:
    folder = await enroll_mqtt(mesh, store, tmp_path / "valve", "valve-1")
    device = paho_device(mesh, folder, "valve-1", answer="succeeded")
    try:
        device.subscribe("mesh/cmd/valve-1/#")
        assert device.granted == [True]
        command = await commands.send(store, "valve-1", "ping", {"n": 1}, ttl_s=60, timeout_s=5, actor="control")
        view = await follow_outcome(store, command, deadline_s=30)
    finally:
        device.stop()
    assert (view.state, view.result) == ("succeeded", {"pong": True})
    topic, qos, body = device.received[0]
    assert topic == f"mesh/cmd/valve-1/{command.command_id}" and qos == 1
    assert body["name"] == "ping" and body["args"] == {"n": 1} and body["command_id"] == command.command_id


async def test_commands_issued_while_the_device_is_offline_reach_it_when_it_returns(
    mesh: Mesh, store: EventStore, bridge: bridging.MqttBridge, tmp_path: Path
) -> None:
    sub = tool("mosquitto_sub")
    folder = await enroll_mqtt(mesh, store, tmp_path / "pump", "pump-1")
    args = [sub, *tls_args(mesh, folder), "-i", "pump-1", "-c", "-q", "1", "-t", "mesh/cmd/pump-1/#"]

    # Never connected yet: the command waits in COMMANDS (no session to keep it).
    first = await commands.send(store, "pump-1", "ping", {}, ttl_s=120, timeout_s=5, actor="control")
    # Connect once with a persistent session (-c), receive the waiting command, and leave.
    got = await asyncio.to_thread(
        subprocess.run, [*args, "-C", "1", "-W", "30"], capture_output=True, text=True, timeout=40
    )
    assert json.loads(got.stdout)["command_id"] == first.command_id, got

    # Offline now; the server keeps what the bridge delivers in the device's session.
    second = await commands.send(store, "pump-1", "echo", {"x": 2}, ttl_s=120, timeout_s=5, actor="control")
    await eventually_async(
        lambda: kept_in_session(bridge, "pump-1", second.command_id), timeout=20, what="the command in the session"
    )
    got = await asyncio.to_thread(
        subprocess.run, [*args, "-C", "1", "-W", "30"], capture_output=True, text=True, timeout=40
    )
    body = json.loads(got.stdout)
    assert (body["command_id"], body["args"]) == (second.command_id, {"x": 2}), got

    result = {"command_id": second.command_id, "state": "succeeded", "result": {"x": 2}}
    topic = "mesh/evt/device/pump-1/command"
    for _ in range(2):  # a report sent twice (QoS 1 may) is appended once
        assert await asyncio.to_thread(mosquitto_pub, mesh, folder, "pump-1", topic, result) == 0
    view = await follow_outcome(store, second, deadline_s=20)
    assert (view.state, view.result) == ("succeeded", {"x": 2})
    await asyncio.to_thread(mosquitto_pub, mesh, folder, "pump-1", "mesh/evt/device/pump-1/telemetry", {"after": 1})

    async def marker_landed() -> bool:
        return await store.last_event(subjects.device_event("pump-1", "telemetry")) is not None

    await eventually_async(marker_landed, timeout=20, what="the telemetry sent after both reports")
    reports = [s.event async for s in store.read(subjects.device_event("pump-1", "command"))]
    assert [type(e).__name__ for e in reports] == ["CommandSucceeded"]


async def test_a_command_kept_in_a_session_that_a_clean_session_wiped_is_delivered_again(
    mesh: Mesh, store: EventStore, bridge: bridging.MqttBridge, tmp_path: Path
) -> None:
    """Issue 16 (a): the device subscribed with a persistent session and left; a command was kept in its
    session; then a clean session of the same client id (the old README's mosquitto_pub line) wiped it."""
    folder = await enroll_mqtt(mesh, store, tmp_path / "meter", "meter-1")
    sub = [tool("mosquitto_sub"), *tls_args(mesh, folder), "-i", "meter-1", "-c", "-q", "1", "-t", "mesh/cmd/meter-1/#"]
    subscribed = await asyncio.to_thread(subprocess.run, [*sub, "-E"], capture_output=True, text=True, timeout=30)
    assert subscribed.returncode == 0, subscribed
    await eventually_async(
        lambda: has_session(bridge, "meter-1"), timeout=20, what="meter-1's session to take commands"
    )
    command = await commands.send(store, "meter-1", "ping", {}, ttl_s=120, timeout_s=5, actor="control")
    await eventually_async(
        lambda: kept_in_session(bridge, "meter-1", command.command_id), timeout=20, what="the command in the session"
    )
    assert await pending_commands(store, "meter-1") == (0, 1)  # kept by the server, not yet taken by the device

    topic = "mesh/evt/device/meter-1/telemetry"
    # The README's publisher, beside the command session (-i meter-1/pub), leaves it alone...
    assert await asyncio.to_thread(mosquitto_pub, mesh, folder, "meter-1/pub", topic, {"temp_c": 41.0}) == 0
    await eventually_async(lambda: telemetry_landed(store, "meter-1"), timeout=20, what="meter-1's telemetry")
    assert await kept_in_session(bridge, "meter-1", command.command_id)
    # ...the old README's, a clean session with the command session's client id, wipes it.
    assert await asyncio.to_thread(mosquitto_pub, mesh, folder, "meter-1", topic, {"temp_c": 41.5}) == 0
    # The clean session dropped the subscription and what it held: the command goes back to COMMANDS...
    await eventually_async(
        lambda: wiped(bridge, "meter-1", command.command_id), timeout=20, what="the clean session's wipe"
    )
    # ...and reaches the device once it subscribes again.
    got = await asyncio.to_thread(
        subprocess.run, [*sub, "-C", "1", "-W", "30"], capture_output=True, text=True, timeout=40
    )
    assert json.loads(got.stdout)["command_id"] == command.command_id, got
    report = {"command_id": command.command_id, "state": "succeeded", "result": {"pong": True}}
    assert (
        await asyncio.to_thread(mosquitto_pub, mesh, folder, "meter-1", "mesh/evt/device/meter-1/command", report) == 0
    )
    view = await follow_outcome(store, command, deadline_s=20)
    assert view.state == "succeeded"
    await eventually_async(
        lambda: taken(store, "meter-1"), timeout=20, what="the bridge to acknowledge the command in COMMANDS"
    )


async def test_a_subscription_to_the_bare_command_topic_takes_no_commands(
    mesh: Mesh, store: EventStore, bridge: bridging.MqttBridge, tmp_path: Path
) -> None:
    """Issue 16 (b): mesh/cmd/<id> is granted but matches no command topic, so it is no session for commands."""
    folder = await enroll_mqtt(mesh, store, tmp_path / "bare", "bare-1")
    device = paho_device(mesh, folder, "bare-1", answer="succeeded")
    try:
        device.subscribe("mesh/cmd/bare-1")
        assert device.granted == [True]
        command = await commands.send(store, "bare-1", "ping", {}, ttl_s=120, timeout_s=5, actor="control")
        await eventually_async(
            lambda: bare_consumer_listed(bridge, "bare-1"), timeout=20, what="the bare subscription's consumer"
        )
        assert "bare-1" not in await bridge.sessions()
        assert await pending_commands(store, "bare-1") == (1, 0)  # still waiting in COMMANDS, not "delivered"
        device.subscribe("mesh/cmd/bare-1/+")
        view = await follow_outcome(store, command, deadline_s=30)
    finally:
        device.stop()
    assert view.state == "succeeded"
    assert [topic for topic, _, _ in device.received] == [f"mesh/cmd/bare-1/{command.command_id}"]


async def telemetry_landed(store: EventStore, device: str) -> bool:
    return await store.last_event(subjects.device_event(device, "telemetry")) is not None


async def wiped(bridge: bridging.MqttBridge, device: str, command_id: str) -> bool:
    return not await kept_in_session(bridge, device, command_id)


async def has_session(bridge: bridging.MqttBridge, device: str) -> bool:
    return device in await bridge.sessions()


async def taken(store: EventStore, device: str) -> bool:
    return await pending_commands(store, device) == (0, 0)


async def bare_consumer_listed(bridge: bridging.MqttBridge, device: str) -> bool:
    consumers = await bridge.bridge.jetstream().consumers_info(mqtt.SESSIONS_STREAM)
    own = mqtt.session_hash(device)  # the server names a session's consumers by its client id's hash
    return any(c.name.startswith(own) and c.config.filter_subject == f"$MQTT.msgs.mesh.cmd.{device}" for c in consumers)


async def test_an_expired_command_is_never_delivered(
    mesh: Mesh, store: EventStore, bridge: bridging.MqttBridge, tmp_path: Path
) -> None:
    folder = await enroll_mqtt(mesh, store, tmp_path / "lamp", "lamp-1")
    command = await commands.send(store, "lamp-1", "ping", {}, ttl_s=0.01, timeout_s=5, actor="control")
    device = paho_device(mesh, folder, "lamp-1")
    try:
        device.subscribe("mesh/cmd/lamp-1/#")
        view = await follow_outcome(store, command, deadline_s=20)
        last = await store.last_event(subjects.device_event("lamp-1", "command"))
    finally:
        device.stop()
    assert view.state == "expired" and isinstance(last, CommandExpired)
    assert device.received == []


async def test_a_device_cannot_publish_or_subscribe_under_another_id(
    mesh: Mesh, store: EventStore, bridge: bridging.MqttBridge, tmp_path: Path
) -> None:
    mine = await enroll_mqtt(mesh, store, tmp_path / "a", "meter-a")
    await enroll_mqtt(mesh, store, tmp_path / "b", "meter-b")

    # meter-a subscribing to meter-b's commands: refused (SUBACK failure), also by mosquitto_sub.
    device = paho_device(mesh, mine, "meter-a")
    try:
        device.subscribe("mesh/cmd/meter-b/#")
        device.subscribe("$MQTT/sub/#")  # the server's own delivery subjects are not for devices either
        device.subscribe("mesh/cmd/meter-a/#")
    finally:
        device.stop()
    assert device.granted == [False, False, True]
    refused = await asyncio.to_thread(
        subprocess.run,
        [tool("mosquitto_sub"), *tls_args(mesh, mine), "-i", "meter-a", "-q", "1", "-t", "mesh/cmd/meter-b/#"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert "denied" in refused.stdout + refused.stderr, refused

    # meter-b's client id is refused to meter-a's certificate: it can neither take over nor wipe meter-b's session.
    impostor = await asyncio.to_thread(
        subprocess.run,
        [tool("mosquitto_sub"), *tls_args(mesh, mine), "-i", "meter-b", "-c", "-q", "1", "-t", "mesh/cmd/meter-a/#"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert impostor.returncode != 0 and "not authorised" in (impostor.stdout + impostor.stderr).lower(), impostor
    command = await commands.send(store, "meter-b", "ping", {}, ttl_s=60, timeout_s=5, actor="control")
    meter_b = paho_device(mesh, tmp_path / "b", "meter-b")
    try:
        meter_b.subscribe("mesh/cmd/meter-b/#")
        await eventually(lambda: meter_b.received, timeout=20, what="meter-b to receive its command")
    finally:
        meter_b.stop()
    assert meter_b.received[0][2]["command_id"] == command.command_id

    # Publishing as meter-b lands nowhere; meter-a's own telemetry, sent after it, lands.
    forged = {"temp_c": 99.0}
    pub = mosquitto_pub
    assert await asyncio.to_thread(pub, mesh, mine, "meter-a", "mesh/evt/device/meter-b/telemetry", forged) == 0
    assert await asyncio.to_thread(pub, mesh, mine, "meter-a", "mesh/evt/device/meter-a/telemetry", {"v": 1}) == 0

    async def own_landed() -> bool:
        return await store.last_event(subjects.device_event("meter-a", "telemetry")) is not None

    await eventually_async(own_landed, timeout=20, what="meter-a's own telemetry")
    assert await store.last_event(subjects.device_event("meter-b", "telemetry")) is None
    assert any('Publish Violation - Subject "mesh.evt.device.meter-b.telemetry"' in line for line in mesh.server.recent)

    # A report about another device's command is dropped by the bridge, never appended.
    report = {"command_id": command.command_id, "state": "failed", "error": "forged"}
    await asyncio.to_thread(pub, mesh, mine, "meter-a", "mesh/evt/device/meter-a/command", report)
    await asyncio.to_thread(pub, mesh, mine, "meter-a", "mesh/evt/device/meter-a/telemetry", {"v": 2})

    async def second_landed() -> bool:
        event = await store.last_event(subjects.device_event("meter-a", "telemetry"))
        return isinstance(event, TelemetryReported) and event.metrics == {"v": 2.0}

    await eventually_async(second_landed, timeout=20, what="meter-a's second telemetry")
    assert await store.last_event(subjects.device_event("meter-a", "command")) is None

    # Its certificate opens the MQTT listener only, not the NATS one.
    with pytest.raises(StoreUnavailable):
        await connect(
            Identity(mesh.identity.url, mine / "ca.pem", mine / "cert.pem", mine / "key.pem"), name="x", reconnect=False
        )


async def test_no_foreign_or_revoked_certificate_is_accepted(
    mesh: Mesh, store: EventStore, bridge: bridging.MqttBridge, tmp_path: Path
) -> None:
    folder = await enroll_mqtt(mesh, store, tmp_path / "gate", "gate-1")
    topic, body = "mesh/evt/device/gate-1/telemetry", {"open": 1}

    assert await asyncio.to_thread(mosquitto_pub, mesh, folder, "gate-1", topic, body, cert=False) != 0

    foreign = CertificateAuthority.init(tmp_path / "foreign-ca")
    foreign.issue_client("gate-1", kind="device", out_dir=tmp_path / "foreign")
    (tmp_path / "foreign" / "ca.pem").write_bytes((mesh.home.ca_dir / "ca.pem").read_bytes())
    assert await asyncio.to_thread(mosquitto_pub, mesh, tmp_path / "foreign", "gate-1", topic, body) != 0

    device = paho_device(mesh, folder, "gate-1")
    try:
        await devices.revoke(mesh.home, store, "gate-1", reason="key_compromise")  # the cut-off kicks it
        await eventually(device.disconnected.is_set, timeout=10, what="the revoked device's connection to close")
    finally:
        device.stop()
    assert await asyncio.to_thread(mosquitto_pub, mesh, folder, "gate-1", topic, body) != 0
    assert await store.last_event(subjects.device_event("gate-1", "telemetry")) is None


async def test_reports_sent_while_the_bridge_is_down_are_translated_when_it_returns(
    mesh: Mesh, store: EventStore, tmp_path: Path
) -> None:
    async def bridge_for_a_while(until: asyncio.Event) -> None:
        opened = await bridging.open_bridge(
            store,
            mesh.home.mqtt_bridge_identity(mesh.settings, mesh.port),
            host="127.0.0.1",
            port=mesh.mqtt_port,
            devices=lambda: mqtt.registered(mesh.home.root),
        )
        try:
            await opened.run(until)
        finally:
            await bridging.close_bridge(opened)

    folder = await enroll_mqtt(mesh, store, tmp_path / "silo", "silo-1")
    stopped = asyncio.Event()
    stopped.set()
    await bridge_for_a_while(stopped)  # makes MQTT_IN, then stops at once: no bridge from here on
    topic = "mesh/evt/device/silo-1/telemetry"
    assert await asyncio.to_thread(mosquitto_pub, mesh, folder, "silo-1", topic, {"level": 0.7}) == 0
    assert await store.last_event(subjects.device_event("silo-1", "telemetry")) is None

    stop = asyncio.Event()
    running = asyncio.create_task(bridge_for_a_while(stop))
    try:

        async def landed() -> bool:
            return await store.last_event(subjects.device_event("silo-1", "telemetry")) is not None

        await eventually_async(landed, timeout=20, what="the report kept in MQTT_IN to be translated")
    finally:
        stop.set()
        await running
