"""The event codec: round trips, tags, unknown and malformed payloads, schema evolution; the commands' own decoder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec
import pytest

from core.events import (
    EVENT_TAGS,
    UPCASTERS,
    CommandIssued,
    EventDecodeError,
    MeshStarted,
    decode,
    decode_command,
    encode,
)
from tests.core.samples import one_of_each

FIXTURES = Path(__file__).parent / "fixtures" / "events"


@pytest.mark.parametrize("event", one_of_each(), ids=lambda e: e.tag)
def test_every_event_round_trips(event: Any) -> None:
    assert decode(encode(event)) == event


def test_tags_are_explicit_and_versioned() -> None:
    for tag in EVENT_TAGS:
        domain, _, version = tag.rpartition(".")
        assert version.startswith("v") and version[1:].isdigit(), tag
        assert "." in domain, tag


def test_unknown_fields_from_newer_writers_are_ignored() -> None:
    event = MeshStarted(node="n", version="1", url="tls://x:1")
    raw = json.loads(encode(event))
    raw["added_in_a_later_version"] = {"anything": [1, 2]}
    assert decode(json.dumps(raw).encode()) == event


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"not json", "not JSON"),
        (b'{"type": "device.exploded.v1"}', "unknown event type 'device.exploded.v1'"),
        (b'{"type": "device.enrolled.v1", "device_id": "d"}', "missing required field"),
        (b'{"no_type": 1}', "type"),
    ],
)
def test_malformed_payloads_raise_with_a_reason(payload: bytes, reason: str) -> None:
    with pytest.raises(EventDecodeError) as caught:
        decode(payload)
    assert reason in caught.value.reason


def test_stored_fixtures_of_every_version_still_decode() -> None:
    """Payloads as they were written by earlier releases; never edit these files, add new ones."""
    files = sorted(FIXTURES.glob("*.json"))
    assert files, f"no fixtures in {FIXTURES}"
    covered = set()
    for path in files:
        event = decode(path.read_bytes())
        covered.add(json.loads(path.read_bytes())["type"])
        assert encode(event)  # and it encodes again in the current version
    assert covered >= EVENT_TAGS, f"write a fixture for {sorted(EVENT_TAGS - covered)}"


def test_an_upcaster_turns_an_old_version_into_the_current_one(monkeypatch: pytest.MonkeyPatch) -> None:
    def v0_to_v1(raw: dict[str, Any]) -> dict[str, Any]:
        return {**raw, "type": "mesh.started.v1", "url": raw.pop("address")}

    monkeypatch.setitem(UPCASTERS, "mesh.started.v0", v0_to_v1)
    old = {
        "type": "mesh.started.v0",
        "event_id": "e1",
        "occurred_at": "2026-01-01T00:00:00Z",
        "node": "n",
        "version": "0.0.1",
        "address": "tls://h:1",
    }
    event = decode(msgspec.json.encode(old))
    assert isinstance(event, MeshStarted)
    assert event.url == "tls://h:1"
    assert event.event_id == "e1"


MALFORMED = [b"not json", b'{"type": "device.exploded.v1"}', b'{"no_type": 1}', b'{"type": "command.issued.v1"}']
MALFORMED += [b'{"command_id": "c", "device_id": "d", "name": "ping"}']  # a command without its "type"


@pytest.mark.parametrize("event", one_of_each(), ids=lambda e: e.tag)
def test_the_commands_decoder_decodes_every_event_as_the_codec_does(event: Any) -> None:
    assert decode_command(encode(event)) == decode(encode(event))


@pytest.mark.parametrize("payload", MALFORMED)
def test_the_commands_decoder_refuses_what_the_codec_refuses_with_its_reason(payload: bytes) -> None:
    with pytest.raises(EventDecodeError) as codec:
        decode(payload)
    with pytest.raises(EventDecodeError) as commands:
        decode_command(payload)
    assert commands.value.reason == codec.value.reason


def test_the_commands_decoder_upcasts_an_old_command_as_the_codec_does(monkeypatch: pytest.MonkeyPatch) -> None:
    def v0_to_v1(raw: dict[str, Any]) -> dict[str, Any]:
        return {**raw, "type": "command.issued.v1", "name": raw.pop("verb")}

    monkeypatch.setitem(UPCASTERS, "command.issued.v0", v0_to_v1)
    old = {"type": "command.issued.v0", "event_id": "e1", "occurred_at": "2026-01-01T00:00:00Z"}
    old |= {"command_id": "c", "device_id": "d", "verb": "ping"}
    event = decode_command(msgspec.json.encode(old))
    assert isinstance(event, CommandIssued)
    assert event.name == "ping"
    assert event == decode(msgspec.json.encode(old))
