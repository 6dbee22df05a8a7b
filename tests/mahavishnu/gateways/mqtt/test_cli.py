"""An MQTT device served by a real `mahavishnu up`: enrol it, send it a command from the CLI, answer with mosquitto."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
from pathlib import Path

import nats.errors

from core.config import load_config
from core.store import connect
from mahavishnu.runtime.home import Home
from tests.harness import free_port, free_port_run
from tests.mahavishnu.cli_harness import MAHAVISHNU, Running, run, scrape_metrics, start_up, stop_up
from tests.tools import tool
from tests.waiting import wait_until


def start_up_with_mqtt(folder: Path) -> tuple[Running, str]:
    """`up` with the MQTT listener on: five distinct free ports (a port freed by free_port may come back)."""
    ports: set[int] = set()
    while len(ports) < 5:
        ports.add(free_port())
    server, monitor, metrics, http, mqtt = (str(port) for port in ports)
    up = start_up(
        folder,
        MAHAVISHNU_SERVER__PORT=server,
        MAHAVISHNU_SERVER__MONITOR_PORT=monitor,
        MAHAVISHNU_METRICS__PORT=metrics,
        MAHAVISHNU_HTTP__PORT=http,
        MAHAVISHNU_MQTT__PORT=mqtt,
    )
    return up, mqtt


def test_cmd_send_wait_completes_for_an_mqtt_device(tmp_path: Path) -> None:
    mosquitto_sub, mosquitto_pub = tool("mosquitto_sub"), tool("mosquitto_pub")
    up, port = start_up_with_mqtt(tmp_path)
    try:
        enrolled = run("device", "enroll", "meter-1", "--transport", "mqtt", env=up.env)
        assert enrolled.returncode == 0, enrolled.stderr
        assert "mosquitto_sub" in enrolled.stdout and "mesh/cmd/meter-1/#" in enrolled.stdout
        listed = run("device", "certificates", env=up.env)
        assert "meter-1  live (1 certificate)" in listed.stdout and listed.stdout.rstrip().endswith("mqtt")
        folder = up.home / "devices" / "meter-1"
        tls = ["--cafile", f"{folder}/ca.pem", "--cert", f"{folder}/cert.pem", "--key", f"{folder}/key.pem"]
        tls += ["-h", "127.0.0.1", "-p", port, "-i", "meter-1", "-q", "1"]
        # The device: one persistent session, waiting for one command.
        device = subprocess.Popen(
            [mosquitto_sub, *tls, "-c", "-C", "1", "-W", "60", "-t", "mesh/cmd/meter-1/#"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        sender = subprocess.Popen(
            [MAHAVISHNU, "cmd", "send", "meter-1", "echo", "--args", '{"v": 7}', "--wait"],
            env=up.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        received, _ = device.communicate(timeout=90)
        command = json.loads(received)
        assert (command["name"], command["args"]) == ("echo", {"v": 7})
        report = {"command_id": command["command_id"], "state": "succeeded", "result": command["args"]}
        answer = ["-t", "mesh/evt/device/meter-1/command", "-m", json.dumps(report)]
        # Beside the command session, as the README says (-i meter-1/pub): it leaves that session alone.
        assert subprocess.run([mosquitto_pub, *tls, "-i", "meter-1/pub", *answer], timeout=30).returncode == 0
        out, err = sender.communicate(timeout=90)
        assert sender.returncode == 0, (out, err)
        assert json.loads(out)["result"] == {"v": 7}
        samples = scrape_metrics(up)
        assert samples['mahavishnu_mqtt_commands_total{outcome="delivered"}'] == 1
        assert samples['mahavishnu_mqtt_reports_total{outcome="appended"}'] >= 1
    finally:
        stop_up(up)
    assert "mqtt bridge" not in up.log()  # the supervisor names a service only when it crashed


def test_up_prints_how_to_connect_an_mqtt_device(tmp_path: Path) -> None:
    up, port = start_up_with_mqtt(tmp_path)
    code, out = up.stop()
    stop_up(up)
    assert code == 0
    assert f"mqtts://127.0.0.1:{port}" in out and "mosquitto_pub --cafile" in out, out


def led_without(up: Running, node: str) -> bool:
    """Whether the streams a command and its report go through have a leader other than `node` (after a node
    died, JetStream elects new ones; meanwhile appends wait, and what the server captures into MQTT_IN is lost).
    Asked on the second node (the bridge's identity names one server only)."""
    settings = load_config(None, env=up.env)
    home = Home(up.home)
    asked = [
        (home.control_identity(settings), ("COMMANDS", "EVENTS")),
        (home.mqtt_bridge_identity(settings, settings.server.port + 1), ("MQTT_IN", "$MQTT_sess", "$MQTT_msgs")),
    ]

    async def ask() -> bool:
        for identity, streams in asked:
            nc = await connect(identity, name="probe")
            try:
                for stream in streams:
                    reply = await nc.request(f"$JS.API.STREAM.INFO.{stream}", b"", timeout=2)
                    if json.loads(reply.data).get("cluster", {}).get("leader") in (None, "", node):
                        return False
            except nats.errors.Error:
                return False
            finally:
                await nc.close()
        return True

    return asyncio.run(ask())


def test_every_node_of_a_cluster_serves_mqtt_devices(tmp_path: Path) -> None:
    """`up --cluster 3`: a device keeps its session on the second node and answers through the third; with
    the first node killed, the bridge delivers through another node."""
    mosquitto_sub, mosquitto_pub = tool("mosquitto_sub"), tool("mosquitto_pub")
    first = free_port_run(3)
    ports = [str(first + k) for k in range(3)]
    up = start_up(
        tmp_path,
        "--cluster",
        "3",
        MAHAVISHNU_SERVER__CLUSTER="3",
        MAHAVISHNU_SERVER__PORT=str(free_port_run(3)),
        MAHAVISHNU_SERVER__CLUSTER_PORT=str(free_port_run(3)),
        MAHAVISHNU_SERVER__MONITOR_PORT="0",
        MAHAVISHNU_SERVER__RESTART_BACKOFF="20s",  # a killed node stays down for a while
        MAHAVISHNU_SERVER__RESTART_BACKOFF_MAX="20s",
        MAHAVISHNU_MQTT__PORT=ports[0],
        MAHAVISHNU_LOGGING__LEVEL="info",  # the bridge's connections
    )
    try:
        enrolled = run("device", "enroll", "meter-1", "--transport", "mqtt", env=up.env)
        assert enrolled.returncode == 0, enrolled.stderr
        folder = up.home / "devices" / "meter-1"
        tls = ["--cafile", f"{folder}/ca.pem", "--cert", f"{folder}/cert.pem", "--key", f"{folder}/key.pem"]
        tls += ["-h", "127.0.0.1", "-q", "1"]
        session = ["-p", ports[1], "-i", "meter-1", "-c", "-t", "mesh/cmd/meter-1/#"]  # on the second node

        def round_trip(value: int) -> None:
            device = subprocess.Popen(
                [mosquitto_sub, *tls, *session, "-C", "1", "-W", "60"],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            sender = subprocess.Popen(
                [MAHAVISHNU, "cmd", "send", "meter-1", "echo", "--args", json.dumps({"v": value}), "--wait"],
                env=up.env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            received, errors = device.communicate(timeout=90)
            if device.returncode != 0:
                sender.kill()
                raise AssertionError((errors, *sender.communicate(timeout=30)))
            command = json.loads(received)
            report = {"command_id": command["command_id"], "state": "succeeded", "result": command["args"]}
            answer = ["-t", "mesh/evt/device/meter-1/command", "-m", json.dumps(report)]
            published = subprocess.run([mosquitto_pub, *tls, "-p", ports[2], "-i", "meter-1/pub", *answer], timeout=30)
            assert published.returncode == 0
            out, err = sender.communicate(timeout=90)
            assert sender.returncode == 0, (out, err)
            assert json.loads(out)["result"] == {"v": value}

        def reconnected() -> bool:
            """The device gets its session back (a device retries: the mesh needs a few seconds after a node dies)."""
            again = [mosquitto_sub, *tls, *session, "-E"]  # subscribe in the persistent session, and leave
            return subprocess.run(again, capture_output=True, timeout=30).returncode == 0

        round_trip(8)
        n1 = int((up.home / "nats" / "cluster-n1.pid").read_text().strip())
        # What `up` logs from the kill on: the bridge may reconnect elsewhere before the supervisor
        # has even noticed the node's exit (and logged it), so the supervisor's line marks nothing.
        killed_at = len(up.log())
        os.kill(n1, signal.SIGKILL)  # the node whose listener the bridge used
        wait_until(reconnected, timeout=60, what="the device's session back on the second node")
        wait_until(lambda: led_without(up, "mahavishnu-n1"), timeout=60, what="new leaders for the streams n1 led")
        # and every stream answers again (a cluster that just lost a node may leave requests unanswered a while)
        settled = run("status", "--wait-ready", "60", env=up.env, timeout=90)
        assert settled.returncode == 0, settled.stderr
        round_trip(9)
        wait_until(lambda: "nats-server restarted" in up.log(), timeout=60, what="n1 back (a clean stop needs it)")
        # While n1 was down, the bridge connected to another node's listener, never to n1's. (On a
        # loaded host it may first connect only after n1 is back: then any listener will do.)
        after = up.log()[killed_at:]
        down = after[: after.index("nats-server restarted")]
        connected = '"the bridge is connected over MQTT", "listener": "127.0.0.1:'
        assert connected in after
        assert f"{connected}{ports[0]}" not in down
        code, printed = up.stop()
    finally:
        stop_up(up)
    assert code == 0
    assert all(f"mqtts://127.0.0.1:{port}" in printed for port in ports), printed
