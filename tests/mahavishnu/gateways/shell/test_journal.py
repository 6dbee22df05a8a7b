"""The broker's journal of open sessions (a file), and what a terminal says when its broker is gone (pure)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mahavishnu.cli.shell import lost
from mahavishnu.gateways.shell.journal import SessionJournal, entry
from mahavishnu.gateways.shell.session import REASONS, Connection, Limits, explain

OWNER = Connection(server="NABC", account="OPS", cid=7, start="2026-12-07T04:00:00Z")


def test_the_journal_keeps_who_owns_each_session_and_where(tmp_path: Path) -> None:
    journal = SessionJournal(tmp_path / "shell" / "sessions.json")
    assert journal.load() == []  # no file yet: nothing left open
    opened = entry(session="ab" * 16, device="dev-a", identity="olga", role="operator", owner=OWNER, opened_at=1.5)
    journal.write([opened])
    [back] = journal.load()
    assert back == opened and back.owner == OWNER
    assert journal.path.stat().st_mode & 0o777 == 0o600
    journal.write([])
    assert journal.load() == []


def test_an_unreadable_journal_is_logged_and_read_as_empty(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    journal = SessionJournal(tmp_path / "sessions.json")
    journal.path.write_text("{not json")
    assert journal.load() == []
    assert "the shell session journal is unreadable" in caplog.text


def test_a_restarted_broker_and_a_lost_one_say_what_happened() -> None:
    assert "broker_restarted" in REASONS
    assert "terminal broker restarted" in explain("broker_restarted", Limits())
    end = lost(42, "no shell broker answers: is `mahavishnu up` running?")
    assert (end.offset, end.ended, end.reason) == (42, True, "broker_lost")
    assert end.message.startswith("lost: no terminal broker answers for it (no shell broker answers")
