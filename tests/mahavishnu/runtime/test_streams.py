"""The streams' definitions (pure)."""

from __future__ import annotations

from core.config import load_config
from mahavishnu.runtime.streams import streams_of


def test_commands_holds_a_durable_consumer_per_device_of_the_fleet() -> None:
    # nats-server 2.15 allows 1,000 consumers per stream unless the stream sets its own limit
    streams = {spec.name: spec.as_config() for spec in streams_of(load_config(None, env={}))}
    assert streams["COMMANDS"]["max_consumers"] == 100_000
    assert "max_consumers" not in streams["EVENTS"]  # no durable per device there: the server's default
    sized = streams_of(load_config(None, env={"MAHAVISHNU_JETSTREAM__MAX_DEVICES": "20000"}))
    assert {spec.name: spec.max_consumers for spec in sized}["COMMANDS"] == 20_000
