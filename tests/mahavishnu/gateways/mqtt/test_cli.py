"""An MQTT device served by a real `mahavishnu up`: enrol it, send it a command from the CLI, answer with mosquitto."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.harness import free_port
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
        assert subprocess.run([mosquitto_pub, *tls, *answer], timeout=30).returncode == 0
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
