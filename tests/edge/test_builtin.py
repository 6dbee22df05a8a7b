"""edge.builtin: ping, info, echo, sleep, config.get and config.set."""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from edge.builtin import ConfigApply, ConfigGet, ConfigSet, Echo, Info, Ping, Sleep, parse_meminfo, parse_uptime
from edge.errors import CommandError, InvalidArguments
from edge.handlers import HandlerContext
from edge.state import AgentState

HAS_PROC = Path("/proc/meminfo").exists()


def refused(handler: Any, args: dict[str, Any]) -> str:
    with pytest.raises(InvalidArguments) as caught:
        handler.validate(args)
    return caught.value.reason


# -- ping, echo, sleep ----------------------------------------------------------------


async def test_ping_answers_pong_and_the_time(context: HandlerContext) -> None:
    Ping().validate({})
    answer = await Ping().run({}, context)

    assert answer["pong"] is True
    assert datetime.fromisoformat(answer["time"]).utcoffset() is not None
    assert refused(Ping(), {"x": 1}) == "ping does not take 'x'; it takes no arguments"


async def test_echo_answers_its_arguments(context: HandlerContext) -> None:
    args = {"a": [1, 2.5, None, True], "b": {"c": "d"}}
    Echo().validate(args)

    assert await Echo().run(args, context) == args
    assert "JSON" in refused(Echo(), {"a": object()})


async def test_sleep_sleeps(context: HandlerContext) -> None:
    Sleep().validate({"seconds": 0.01})

    assert await Sleep().run({"seconds": 0.01}, context) == {"slept": 0.01}


@pytest.mark.parametrize("args", [{}, {"seconds": -1}, {"seconds": 3601}, {"seconds": "5"}, {"seconds": True}])
def test_sleep_needs_0_to_3600_seconds(args: dict[str, Any]) -> None:
    assert refused(Sleep(), args) == "sleep needs 'seconds', a number from 0 to 3600"


def test_sleep_refuses_nan_and_unknown_arguments() -> None:
    assert "0 to 3600" in refused(Sleep(), {"seconds": float("nan")})
    assert refused(Sleep(), {"seconds": 1, "secs": 2}) == "sleep does not take 'secs'; it takes 'seconds'"


# -- config.get, config.set -----------------------------------------------------------


async def test_config_set_then_get(context: HandlerContext, state: AgentState) -> None:
    ConfigSet().validate({"key": "rate", "value": {"hz": 50, "on": [True]}})

    assert await ConfigSet().run({"key": "rate", "value": {"hz": 50, "on": [True]}}, context) == {
        "key": "rate",
        "value": {"hz": 50, "on": [True]},
    }
    await ConfigSet().run({"key": "name", "value": "north"}, context)
    await ConfigSet().run({"key": "name", "value": "south"}, context)

    assert await ConfigGet().run({"key": "rate"}, context) == {"hz": 50, "on": [True]}
    assert await ConfigGet().run({}, context) == {"name": "south", "rate": {"hz": 50, "on": [True]}}
    assert state.config_get("name") == "south"


async def test_config_values_persist(tmp_path: Path) -> None:
    with AgentState(tmp_path / "s.lmdb") as state:
        await ConfigSet().run({"key": "k", "value": None}, HandlerContext(device_id="d", config=state))
    with AgentState(tmp_path / "s.lmdb") as state:
        assert await ConfigGet().run({"key": "k"}, HandlerContext(device_id="d", config=state)) is None


async def test_config_get_of_a_missing_key_fails(context: HandlerContext) -> None:
    with pytest.raises(CommandError) as caught:
        await ConfigGet().run({"key": "absent"}, context)

    assert caught.value.message == "no config value 'absent' on this device; set one with config.set"


def test_config_arguments_are_checked() -> None:
    ConfigGet().validate({})
    assert "needs 'key'" in refused(ConfigGet(), {"key": ""})
    assert "needs 'key'" in refused(ConfigSet(), {"value": 1})
    assert "needs 'key'" in refused(ConfigSet(), {"key": 5, "value": 1})
    assert "needs 'value'" in refused(ConfigSet(), {"key": "k"})
    assert "needs 'value'" in refused(ConfigSet(), {"key": "k", "value": {1: 2}})
    assert "does not take 'val'" in refused(ConfigSet(), {"key": "k", "val": 1})


# -- info -------------------------------------------------------------------------------


async def test_info_describes_this_machine(context: HandlerContext) -> None:
    Info().validate({})
    info = await Info().run({}, context)

    assert info["os"] == os.uname().sysname
    assert info["machine"] == os.uname().machine
    assert info["cpu_count"] == os.cpu_count()
    assert info["disk"]["path"] == "/"
    assert info["disk"]["total_bytes"] >= info["disk"]["free_bytes"] > 0
    if HAS_PROC:
        assert info["memory"]["total_bytes"] >= info["memory"]["available_bytes"] > 0
        assert info["uptime_s"] > 0
        assert len(info["load_average"]) == 3


async def test_info_reads_proc_and_leaves_out_what_is_missing(context: HandlerContext, tmp_path: Path) -> None:
    (tmp_path / "meminfo").write_text("MemTotal:  2048 kB\nMemFree:   512 kB\nMemAvailable: 1024 kB\n")
    (tmp_path / "uptime").write_text("350735.47 234388.90\n")

    info = await Info(proc=tmp_path, disk=str(tmp_path / "absent")).run({}, context)
    bare = await Info(proc=tmp_path / "absent").run({}, context)

    assert info["memory"] == {"total_bytes": 2048 * 1024, "available_bytes": 1024 * 1024}
    assert info["uptime_s"] == 350735.47
    assert info["disk"] is None
    assert bare["memory"] is None and bare["uptime_s"] is None


def test_meminfo_and_uptime_parsing() -> None:
    assert parse_meminfo("MemTotal: 100 kB\nMemFree: 40 kB\n") == {"total_bytes": 102400, "available_bytes": 40960}
    assert parse_meminfo("Buffers: 1 kB\n") is None
    assert parse_meminfo("MemTotal: 100 kB\n") is None
    assert parse_uptime("") is None
    assert parse_uptime("x y") is None


async def test_config_apply_sets_every_key_at_once(context: HandlerContext, state: AgentState) -> None:
    ConfigApply().validate({"values": {"mode": "eco", "rate": 5}})
    assert await ConfigApply().run({"values": {"mode": "eco", "rate": 5}}, context) == {
        "values": {"mode": "eco", "rate": 5}
    }
    assert state.config_items() == {"mode": "eco", "rate": 5}


@pytest.mark.parametrize(
    "args", [{}, {"values": {}}, {"values": [1]}, {"values": {"": 1}}, {"values": {"k": 1}, "x": 1}]
)
def test_config_apply_refuses_what_is_no_set_of_keys(args: dict[str, Any]) -> None:
    assert "config.apply" in refused(ConfigApply(), args)
