"""The broker's open sessions on disk, so that the broker started after a crash ends them cleanly (thin I/O).

A session cannot outlive the process of the broker that opened it: it belongs to the
connection that opened it (ADR 0010), its unread output lives in that process, and a new
broker cannot tell its owner's next request from a replay. So a session is written here
once its opening is recorded, and removed once its ending is. A clean stop ends every
session itself (mesh_stopping) and leaves the file empty; after a crash (`up` killed, the
machine lost) the next broker finds the sessions left here and ends each with the reason
broker_restarted: the agent stops the shell, the trail gets its shell.close, and the
owner's terminal, if it is still connected, reads why it ended.

The file ($MAHAVISHNU_HOME/shell/sessions.json, 0600) holds who owned each session and
where, never what was typed. Rewritten whole at each change (replaced atomically): a
broker holds a handful of sessions.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

import msgspec

from mahavishnu.gateways.shell.session import Connection
from mahavishnu.runtime.home import write_private

log = logging.getLogger("mahavishnu.shell")

FILE = Path("shell") / "sessions.json"


class Entry(msgspec.Struct, frozen=True, kw_only=True):
    """One open session as the journal keeps it; `opened_at` in seconds since the epoch."""

    session: str
    device: str
    identity: str
    role: str
    server: str
    account: str
    cid: int
    start: str
    opened_at: float

    @property
    def owner(self) -> Connection:
        return Connection(server=self.server, account=self.account, cid=self.cid, start=self.start)


def entry(*, session: str, device: str, identity: str, role: str, owner: Connection, opened_at: float) -> Entry:
    """The journal's entry of a session (pure)."""
    return Entry(
        session=session,
        device=device,
        identity=identity,
        role=role,
        server=owner.server,
        account=owner.account,
        cid=owner.cid,
        start=owner.start,
        opened_at=opened_at,
    )


def journal_path(home_root: Path) -> Path:
    return home_root / FILE


class SessionJournal:
    """The file at `path`: `load()` what a previous broker left, `write()` the sessions open now."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> list[Entry]:
        """The sessions left in the file; none when there is no file. A file that does not decode is
        logged and read as empty: its sessions end at the agents' own limits, and the broker starts."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return []
        try:
            return msgspec.json.decode(data, type=list[Entry])
        except msgspec.DecodeError as exc:
            log.error(
                "the shell session journal is unreadable: its sessions end at their agents' limits",
                extra={"file": str(self.path), "reason": str(exc)},
            )
            return []

    def write(self, entries: Iterable[Entry]) -> None:
        """Replace the file with `entries`, readable by the owner only, from the first byte on."""
        write_private(self.path, msgspec.json.encode(list(entries)).decode())
