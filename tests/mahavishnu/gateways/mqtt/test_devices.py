"""The pure half of MQTT devices: listener block, users, sessions, payloads and their translation."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from certs import IssuedRecord, certificate_uri
from core.config import ConfigError, load_config
from core.events import (
    CommandFailed,
    CommandIssued,
    CommandSucceeded,
    DeviceHeartbeat,
    ReportedState,
    TelemetryReported,
)
from mahavishnu.gateways.mqtt import devices as mqtt
from mahavishnu.runtime.natsconf import render_users
from mahavishnu.runtime.up import mqtt_help

NOW = datetime(2026, 12, 2, tzinfo=UTC)


def record(identity: str, kind: str, serial: int, *, revoked: bool = False) -> IssuedRecord:
    return IssuedRecord(
        identity=identity,
        kind=kind,
        serial=serial,
        not_after=NOW + timedelta(days=1),
        fingerprint_sha256="00",
        revoked=revoked,
    )


def test_the_listener_is_off_at_port_0_and_maps_certificates_to_users_otherwise() -> None:
    ca, cert = Path("/m/ca/ca.pem"), Path("/m/server/cert.pem")
    assert mqtt.listener_block("127.0.0.1", 0, cert=cert, key="/m/server/key.pem", ca=ca).startswith("#")
    block = mqtt.listener_block("0.0.0.0", 8883, cert=cert, key="/m/server/key.pem", ca=ca)
    assert "port: 8883" in block and "verify_and_map: true" in block and '"/m/ca/ca.pem"' in block


def test_mqtt_is_off_by_default_and_its_port_is_checked() -> None:
    assert load_config(None, env={}).mqtt.port == 0
    assert load_config(None, env={"MAHAVISHNU_MQTT__PORT": "8883"}).mqtt.port == 8883
    with pytest.raises(ConfigError, match=r"mqtt\.port must be between 0 and 65535"):
        load_config(None, env={"MAHAVISHNU_MQTT__PORT": "70000"})


def test_an_mqtt_device_may_use_its_own_topics_over_mqtt_only() -> None:
    user = mqtt.device_user("dev-a", 0x1F)
    assert user.name == certificate_uri(0x1F)
    assert user.publish_allow == ("mesh.evt.device.dev-a.>",)
    assert user.subscribe_allow == ("mesh.cmd.dev-a", "mesh.cmd.dev-a.>")
    assert user.connection_types == ("MQTT",)
    assert 'allowed_connection_types: ["MQTT"]' in render_users([user])
    with pytest.raises(ValueError, match="device id"):
        mqtt.device_user("a.b", 1)


def test_only_the_bridge_is_a_configured_user_of_the_mqtt_account() -> None:
    records = [
        record("control", "control", 1),
        record("dev-m", "device", 3),  # an MQTT device: admitted by the identity service, not configured
        record(mqtt.BRIDGE_ID, "control", 5),
        record(mqtt.BRIDGE_ID, "control", 6, revoked=True),
    ]
    users = mqtt.mqtt_users(records, NOW)
    assert [u.name for u in users] == [certificate_uri(5)]
    assert users[0].publish_allow is None and users[0].connection_types == ("STANDARD", "MQTT")
    assert [r.identity for r in records if not mqtt.is_bridge_record(r)] == ["control", "dev-m"]


@pytest.mark.parametrize(
    ("client_id", "allowed"),
    [
        ("meter-1", True),
        ("meter-1/pub", True),
        ("meter-1/a_b-2", True),
        ("meter-2", False),  # another device's session
        ("meter-2/pub", False),
        ("meter-1-pub", False),  # could be another device's id
        ("meter-1/", False),
        ("meter-1/a/b", False),
        ("", False),
        ("x" * 10_000, False),
    ],
)
def test_a_device_connects_under_its_own_client_id_only(client_id: str, allowed: bool) -> None:
    refusal = mqtt.client_id_refusal("meter-1", client_id)
    assert (refusal is None) == allowed
    if refusal is not None:
        assert refusal.startswith("device:meter-1 connected to MQTT as client id") and "-i meter-1" in refusal
        assert len(refusal) < 300


def test_a_session_takes_commands_when_it_is_the_devices_own_and_covers_its_command_topics() -> None:
    a, b = mqtt.session_hash("dev-a"), mqtt.session_hash("dev-b")
    consumers = [
        (f"{a}_1", "$MQTT.msgs.mesh.cmd.dev-a.>"),  # mesh/cmd/dev-a/#
        (f"{a}_2", "$MQTT.msgs.mesh.cmd.dev-a"),  # the bare topic: matches no command
        (f"{a}_3", "$MQTT.msgs.mesh.cmd.dev-a.*"),  # mesh/cmd/dev-a/+
        (f"{b}_1", "$MQTT.msgs.mesh.cmd.dev-b"),  # dev-b subscribed to its bare topic only
        (f"{mqtt.session_hash('dev-a/pub')}_1", "$MQTT.msgs.mesh.cmd.dev-a.>"),  # not dev-a's own session
        (f"{a}_4", "$MQTT.msgs.mesh.cmd.>"),
    ]
    assert mqtt.command_sessions(consumers, ["dev-a", "dev-b", "dev-c"]) == {"dev-a": frozenset({f"{a}_1", f"{a}_3"})}
    assert len(a) == 8 and a != b and a.isalnum()


def test_a_command_is_sent_as_its_request_and_its_expiry() -> None:
    command = CommandIssued(command_id="c-1", device_id="dev-a", name="echo", args={"x": 1}, ttl_s=30, occurred_at=NOW)
    body = json.loads(mqtt.command_payload(command))
    assert body == {
        "command_id": "c-1",
        "name": "echo",
        "args": {"x": 1},
        "timeout_s": 10.0,
        "expires_at": (NOW + timedelta(seconds=30)).isoformat(),
    }
    assert mqtt.command_topic("dev-a", "c-1") == "mesh/cmd/dev-a/c-1"
    assert not mqtt.expired(command, NOW + timedelta(seconds=29))
    assert mqtt.expired(command, NOW + timedelta(seconds=31))


def test_reports_become_events_of_the_device_named_by_the_topic() -> None:
    def translate(what: str, body: object, device: str = "dev-a") -> object:
        return mqtt.translate(device, what, json.dumps(body).encode(), at=NOW, source="MQTT_IN:7")

    telemetry = translate("telemetry", {"temp_c": 41.5, "n": 2})
    assert telemetry == TelemetryReported(
        device_id="dev-a", metrics={"temp_c": 41.5, "n": 2.0}, actor="dev-a", occurred_at=NOW,
        event_id=mqtt.derived_event_id("MQTT_IN:7"),
    )  # fmt: skip
    assert isinstance(translate("heartbeat", {"uptime_s": 3}), DeviceHeartbeat)
    assert isinstance(translate("reported", {"rate": 5}), ReportedState)
    done = translate("command", {"command_id": "c-1", "state": "succeeded", "result": {"ok": 1}, "device_id": "dev-b"})
    assert isinstance(done, CommandSucceeded) and (done.device_id, done.result) == ("dev-a", {"ok": 1})
    assert done.event_id == translate("command", {"command_id": "c-1", "state": "succeeded"}).event_id  # type: ignore[attr-defined]
    failed = translate("command", {"command_id": "c-1", "state": "failed"})
    assert isinstance(failed, CommandFailed) and "no reason" in failed.error


@pytest.mark.parametrize(
    ("what", "payload", "problem"),
    [
        ("telemetry", b"not json", "is not JSON"),
        ("telemetry", b"[1, 2]", "must be a JSON object"),
        ("telemetry", b'{"temp": "hot"}', "non-empty object of numbers"),
        ("telemetry", b"{}", "non-empty object of numbers"),
        ("heartbeat", b'{"uptime_s": "long"}', "uptime_s must be a number"),
        ("command", b'{"state": "succeeded"}', 'needs its "command_id"'),
        ("command", b'{"command_id": "a.b", "state": "succeeded"}', "cannot be used in a NATS subject"),
        ("command", b'{"command_id": "c-1", "state": "expired"}', "must be one of accepted"),
        ("shadow", b"{}", "use telemetry, heartbeat, reported or command"),
    ],
)
def test_what_cannot_be_translated_says_why(what: str, payload: bytes, problem: str) -> None:
    with pytest.raises(mqtt.MqttPayloadError, match=problem.replace("(", r"\(")):
        mqtt.translate("dev-a", what, payload, at=NOW, source="MQTT_IN:1")


def test_only_one_level_below_the_device_is_a_report() -> None:
    assert mqtt.parse_subject("mesh.evt.device.dev-a.telemetry") == ("dev-a", "telemetry")
    with pytest.raises(mqtt.MqttPayloadError, match="one level"):
        mqtt.parse_subject("mesh.evt.device.dev-a.telemetry.extra")


def test_the_registry_of_mqtt_devices(tmp_path: Path) -> None:
    assert mqtt.registered(tmp_path) == frozenset()
    mqtt.register(tmp_path, "dev-b")
    mqtt.register(tmp_path, "dev-a")
    mqtt.register(tmp_path, "dev-a")
    assert mqtt.registered(tmp_path) == {"dev-a", "dev-b"}
    (tmp_path / mqtt.REGISTRY_FILE).write_text("{broken")
    with pytest.raises(mqtt.MqttError, match="damaged"):
        mqtt.registered(tmp_path)


def test_up_says_how_to_connect_with_mosquitto(tmp_path: Path) -> None:
    from mahavishnu.runtime.home import Home

    settings = load_config(None, env={"MAHAVISHNU_MQTT__PORT": "8883"})
    text = mqtt_help(Home(tmp_path), settings)
    assert "mqtts://127.0.0.1:8883" in text
    assert f"--cafile {tmp_path}/ca/ca.pem" in text and "-t mesh/evt/device/ID/telemetry" in text
    assert "mosquitto_sub" in text and "-i ID -c" in text and "-i ID/pub" in text  # a publisher beside the session
    cluster = load_config(None, env={"MAHAVISHNU_MQTT__PORT": "8883", "MAHAVISHNU_SERVER__CLUSTER": "3"})
    assert "mqtts://127.0.0.1:8883, mqtts://127.0.0.1:8884, mqtts://127.0.0.1:8885" in mqtt_help(
        Home(tmp_path), cluster
    )


def test_every_node_of_a_cluster_has_an_mqtt_listener_of_its_own(tmp_path: Path) -> None:
    from mahavishnu.runtime.clusterplan import node_config, plan_nodes
    from mahavishnu.runtime.home import Home
    from mahavishnu.runtime.provisioning import prepare

    settings = load_config(None, env={"MAHAVISHNU_MQTT__PORT": "8883", "MAHAVISHNU_SERVER__CLUSTER": "3"})
    base = prepare(Home(tmp_path), settings)
    nodes = plan_nodes(tmp_path, settings)
    rendered = [node_config(base, node, nodes, settings).render() for node in nodes]
    assert [node.mqtt_port for node in nodes] == [8883, 8884, 8885]
    assert all(f"  port: {node.mqtt_port}\n" in text for node, text in zip(nodes, rendered, strict=True))
    assert all(text.count("mqtt {") == 1 and "verify_and_map: true" in text for text in rendered)
    assert all("stream_replicas: 3" in text for text in rendered)  # the server alone would take 2 (its routes)
    assert all('include "mqtt.conf"' in text for text in rendered)  # every node knows the MQTT account's users


def test_a_node_of_a_cluster_across_hosts_keeps_its_mqtt_streams_at_its_replicas(tmp_path: Path) -> None:
    from mahavishnu.runtime.home import Home
    from mahavishnu.runtime.provisioning import prepare

    single = prepare(Home(tmp_path / "single"), load_config(None, env={"MAHAVISHNU_MQTT__PORT": "8883"}))
    assert "stream_replicas" not in single.render()  # one server: the server's own choice, 1
    node = load_config(None, env={"MAHAVISHNU_MQTT__PORT": "8883", "MAHAVISHNU_JETSTREAM__REPLICAS": "3"})
    assert "  stream_replicas: 3\n" in prepare(Home(tmp_path / "node"), node).render()  # `up --node` asks for 3
