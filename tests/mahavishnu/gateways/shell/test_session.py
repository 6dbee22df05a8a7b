"""The remote terminal's pure rules: who may open, whose connection it is, when it ends, how it is recorded."""

from __future__ import annotations

import json

import pytest

from core.requester import RequestInfoError, parse_request_info
from edge.shell_protocol import parse_session_subject, pick_shell
from mahavishnu.gateways.shell.session import (
    Clock,
    Connection,
    Limits,
    connection_of,
    disconnected,
    due,
    explain,
    may_open,
    next_check,
    same_connection,
)
from mahavishnu.gateways.shell.transcript import MAX_CHARS, Transcript, record_entry, session_text

ANN = Connection(server="mesh", account="OPS", cid=9, start="2026-12-02T01:48:20.5Z")
INFO = {"start": ANN.start, "id": 9, "acc": "OPS", "user": "mahavishnu:cert:7b", "server": "mesh", "kind": "Client"}


@pytest.mark.parametrize(
    ("role", "allowed"), [("admin", True), ("operator", True), ("viewer", False), ("auditor", False)]
)
def test_only_admins_and_operators_open_terminals(role: str, allowed: bool) -> None:
    assert may_open(role) is allowed


def test_the_connection_comes_from_the_servers_request_info() -> None:
    assert connection_of(parse_request_info(json.dumps(INFO))) == ANN
    # No header, or not the server's: core.requester refuses it (tests/core/test_requester.py).
    for header in (None, "not json", json.dumps({**INFO, "id": "9"})):
        with pytest.raises(RequestInfoError):
            parse_request_info(header)


def test_a_disconnect_event_names_the_same_connection() -> None:
    advisory = {"server": {"name": "mesh"}, "client": {**INFO, "stop": "later"}, "reason": "Client Closed"}
    gone = disconnected(advisory)
    assert gone is not None and same_connection(gone, ANN)
    assert disconnected({"client": INFO}) is None


@pytest.mark.parametrize(
    "other",
    [
        Connection("mesh", "OPS", 10, ANN.start),  # another connection of the same server
        Connection("mesh-2", "OPS", 9, ANN.start),  # the same client id on another server of a cluster
        Connection("mesh", "OPS", 9, "2026-12-03T00:00:00Z"),  # the id reused after a restart
        Connection("mesh", "MESH", 9, ANN.start),
    ],
)
def test_any_other_connection_is_someone_else(other: Connection) -> None:
    assert not same_connection(ANN, other)


def test_limits_end_a_session_for_the_first_reason_due() -> None:
    limits = Limits(idle_s=10, max_s=30, owner_silence_s=5)
    fresh = Clock(opened=100, last_input=100, last_seen=100)
    assert due(fresh, 104.9, limits) is None
    assert next_check(fresh, limits) == 105
    assert due(fresh, 105, limits) == "owner_silent"
    reading = Clock(opened=100, last_input=100, last_seen=109)
    assert due(reading, 110, limits) == "idle_timeout"  # reading output is not typing
    typing = Clock(opened=100, last_input=129, last_seen=129)
    assert due(typing, 130, limits) == "max_duration"  # however busy


def test_limits_must_be_positive() -> None:
    with pytest.raises(ValueError, match="idle_s must be more than 0"):
        Limits(idle_s=0)


def test_every_end_is_explained() -> None:
    limits = Limits(idle_s=900, max_s=1800, owner_silence_s=30)
    assert explain("exited", limits, 0) == "the shell exited (status 0)"
    assert explain("idle_timeout", limits) == "closed after 15m without a keystroke (idle timeout)"
    assert explain("max_duration", limits) == "closed after 30m (the maximum duration of a session)"
    assert "went away" in explain("owner_disconnected", limits)


def test_shells_come_only_from_the_allowlist() -> None:
    assert pick_shell("", ("/bin/sh", "/bin/bash")) == "/bin/sh"
    assert pick_shell("/bin/bash", ("/bin/sh", "/bin/bash")) == "/bin/bash"
    with pytest.raises(ValueError, match="not in this device's shell_allowlist"):
        pick_shell("/bin/sh -c reboot", ("/bin/sh",))
    with pytest.raises(ValueError, match="allows no shells"):
        pick_shell("", ())


def test_session_subjects_are_parsed_strictly() -> None:
    session = "a" * 32
    assert parse_session_subject(f"mesh.pty.out.dev-a.{session}") == ("out", "dev-a", session)
    assert parse_session_subject("mesh.pty.out.dev-a.short") is None
    assert parse_session_subject(f"mesh.evt.out.dev-a.{session}") is None


def test_a_transcript_keeps_the_order_of_keystrokes_and_output() -> None:
    transcript = Transcript()
    transcript.add("input", b"ec")
    transcript.add("input", b"ho hi\r")
    transcript.add("output", b"echo hi\r\nhi\r\n")
    transcript.add("input", b"exit\r")
    taken = transcript.take()
    assert [(seq, s.direction, s.text) for seq, s in taken] == [
        (1, "input", "echo hi\r"),
        (2, "output", "echo hi\r\nhi\r\n"),
        (3, "input", "exit\r"),
    ]
    assert transcript.take() == []
    transcript.add("output", b"bye")
    assert [seq for seq, _ in transcript.take()] == [4]  # numbered on across takes
    assert (transcript.bytes_in, transcript.bytes_out) == (13, 16)


def test_a_character_split_between_reads_is_put_back_together() -> None:
    transcript = Transcript()
    euro = "€".encode()
    transcript.add("output", euro[:1])
    transcript.add("output", euro[1:] + b"\xff")
    transcript.finish()
    [(_, segment)] = transcript.take()
    assert segment.text == "€\\xff"  # bytes that are not UTF-8 stay visible as escapes


def test_long_output_is_cut_into_records_that_fit_the_trail() -> None:
    transcript = Transcript()
    transcript.add("output", b"x" * (MAX_CHARS * 2 + 5))
    taken = transcript.take()
    assert [len(s.text) for _, s in taken] == [MAX_CHARS, MAX_CHARS, 5]
    entries = [record_entry(actor="ann", device="dev-a", session="s", seq=seq, segment=s) for seq, s in taken]
    assert entries[0]["category"] == "shell" and entries[0]["action"] == "shell.output"
    assert session_text(list(reversed(entries)), "output") == "x" * (MAX_CHARS * 2 + 5)
