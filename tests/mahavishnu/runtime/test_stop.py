"""A clean stop of `up` however the signal arrives: to its process group, to every process of its
control group at once, or as the shipped systemd unit sends it.

`up` runs in a process group (session) of its own, as a terminal's foreground job or a
systemd service does. It must exit 0, print "mesh stopped", leave no nats-server behind and
never restart one during the stop; where the signal reaches `up` first, mesh.stopped is
recorded.
"""

from __future__ import annotations

import configparser
import os
import signal
import subprocess
from pathlib import Path

import pytest

from core.config import load_config
from core.events import MeshStopped
from core.store import EventStore
from mahavishnu.runtime.home import Home
from mahavishnu.runtime.offline import control_connection
from mahavishnu.runtime.streams import streams_of
from tests.mahavishnu.cli_harness import MAHAVISHNU, Running, environment, run, server_pid, stop_up

UNIT = Path(__file__).resolve().parents[3] / "ops" / "systemd" / "mahavishnu.service"


def _start_in_own_group(folder: Path) -> Running:
    """`mahavishnu up` as the leader of a process group of its own (a terminal job, a service), ready."""
    env = environment(folder / "home", MAHAVISHNU_LOGGING__LEVEL="info")
    log = (folder / "up.log").open("w")
    process = subprocess.Popen(
        [MAHAVISHNU, "up"], env=env, stdout=subprocess.PIPE, stderr=log, text=True, start_new_session=True
    )
    log.close()
    running = Running(process, env, folder / "home")
    ready = run("status", "--wait-ready", "60", env=env, timeout=90)
    assert ready.returncode == 0, (ready.stderr, process.poll())
    return running


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


async def _stops_recorded(running: Running) -> int:
    """How many mesh.stopped events the (now stopped) mesh holds, read through a server of the test's own."""
    home = Home(running.home)
    settings = load_config(None, env=running.env)
    async with control_connection(home, settings, "test-read") as connected:
        store = EventStore(connected.nc, streams_of(settings))
        return sum([isinstance(s.event, MeshStopped) async for s in store.read("mesh.evt.mesh.stopped")])


def _wait_exit(running: Running, timeout: float) -> tuple[int, str]:
    out, _ = running.process.communicate(timeout=timeout)
    return running.process.returncode, out


def _assert_clean(running: Running, code: int, out: str, server: int) -> None:
    assert code == 0, running.log()[-3000:]
    assert "mesh stopped" in out
    assert "exited unexpectedly" not in running.log() and "nats-server restarted" not in running.log()
    assert "Traceback" not in running.log()
    assert not _alive(server), "nats-server outlived up"


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
async def test_a_signal_to_ups_process_group_stops_it_cleanly_and_records_the_stop(
    tmp_path: Path, sig: signal.Signals
) -> None:
    """A terminal's Ctrl-C, or `kill -INT -- -PGID`: the whole foreground group is signalled at once."""
    running = _start_in_own_group(tmp_path)
    try:
        server = server_pid(running)
        assert server is not None
        os.killpg(running.process.pid, sig)
        code, out = _wait_exit(running, 60)
    finally:
        stop_up(running)
    _assert_clean(running, code, out, server)
    assert await _stops_recorded(running) == 1


async def test_a_signal_to_every_process_at_once_is_a_clean_stop_without_a_restart(tmp_path: Path) -> None:
    """systemd's default KillMode=control-group: up and its nats-server get SIGTERM in the same instant.

    The server is then gone before up can record mesh.stopped; what must hold is that up takes
    the server's exit for part of the stop (no restart), and exits 0 with nothing left behind.
    """
    running = _start_in_own_group(tmp_path)
    try:
        server = server_pid(running)
        assert server is not None
        os.kill(server, signal.SIGTERM)
        os.killpg(running.process.pid, signal.SIGTERM)
        code, out = _wait_exit(running, 60)
    finally:
        stop_up(running)
    _assert_clean(running, code, out, server)


def _unit_service_settings() -> configparser.SectionProxy:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]  # systemd's keys are case-sensitive
    unit.read_string(UNIT.read_text())
    return unit["Service"]


async def test_a_stop_under_the_shipped_units_settings_is_clean_and_recorded(tmp_path: Path) -> None:
    """`systemctl stop` as ops/systemd/mahavishnu.service asks for it: KillSignal to the processes its KillMode
    names (mixed: the main process; control-group: all), SIGKILL to all after TimeoutStopSec."""
    service = _unit_service_settings()
    kill_mode = service.get("KillMode", "control-group")
    kill_signal = signal.Signals[service.get("KillSignal", "SIGTERM")]
    timeout = float(service.get("TimeoutStopSec", "90").removesuffix("s"))
    running = _start_in_own_group(tmp_path)
    try:
        server = server_pid(running)
        assert server is not None
        if kill_mode == "mixed":
            os.kill(running.process.pid, kill_signal)
        else:
            assert kill_mode == "control-group", f"the test emulates mixed and control-group, not {kill_mode}"
            os.kill(server, kill_signal)
            os.kill(running.process.pid, kill_signal)
        try:
            code, out = _wait_exit(running, timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"up outlived TimeoutStopSec={timeout:g}: systemd would kill it") from None
    finally:
        stop_up(running)
    _assert_clean(running, code, out, server)
    # Only a signal that reaches up alone lets it record the stop before its server stops.
    assert kill_mode == "mixed", "the shipped unit must signal up alone (KillMode=mixed) for mesh.stopped"
    assert await _stops_recorded(running) == 1
