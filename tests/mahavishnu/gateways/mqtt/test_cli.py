"""An MQTT device served by a real `mahavishnu up`: enrol it, send it a command from the CLI, answer with mosquitto."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.harness import free_port, free_port_run
from tests.mahavishnu.cli_harness import MAHAVISHNU, Running, run, scrape_metrics, start_up, stop_up
from tests.tools import tool


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


def test_every_node_of_a_cluster_serves_mqtt_devices(tmp_path: Path) -> None:
    """`up --cluster 3`: a device keeps its session on the second node and answers through the third."""
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
        MAHAVISHNU_MQTT__PORT=ports[0],
    )
    try:
        enrolled = run("device", "enroll", "meter-1", "--transport", "mqtt", env=up.env)
        assert enrolled.returncode == 0, enrolled.stderr
        folder = up.home / "devices" / "meter-1"
        tls = ["--cafile", f"{folder}/ca.pem", "--cert", f"{folder}/cert.pem", "--key", f"{folder}/key.pem"]
        tls += ["-h", "127.0.0.1", "-q", "1"]
        session = ["-p", ports[1], "-i", "meter-1", "-c", "-t", "mesh/cmd/meter-1/#"]  # on the second node
        device = subprocess.Popen(
            [mosquitto_sub, *tls, *session, "-C", "1", "-W", "60"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        sender = subprocess.Popen(
            [MAHAVISHNU, "cmd", "send", "meter-1", "echo", "--args", '{"v": 8}', "--wait"],
            env=up.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        received, errors = device.communicate(timeout=90)
        assert device.returncode == 0, errors
        command = json.loads(received)
        report = {"command_id": command["command_id"], "state": "succeeded", "result": command["args"]}
        answer = ["-t", "mesh/evt/device/meter-1/command", "-m", json.dumps(report)]
        published = subprocess.run([mosquitto_pub, *tls, "-p", ports[2], "-i", "meter-1/pub", *answer], timeout=30)
        assert published.returncode == 0
        out, err = sender.communicate(timeout=90)
        assert sender.returncode == 0, (out, err)
        assert json.loads(out)["result"] == {"v": 8}
        code, printed = up.stop()
    finally:
        stop_up(up)
    assert code == 0
    assert all(f"mqtts://127.0.0.1:{port}" in printed for port in ports), printed
