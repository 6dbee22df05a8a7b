"""`mahavishnu device enroll --bulk FILE.csv`: enrol a batch pushed by the operator, one row per device.

    id[,transport][,site][,tags]        e.g.  sensor-01,nats,site-north,rack=r7;env=prod

A header row starting with `id`, blank lines and lines starting with `#` are skipped. A bad
row does not stop the batch: it is reported by its line number and the rest go on, and the
command exits non-zero when any row failed. Rows are parsed here (pure); each is enrolled
with control.devices.enroll and tagged with control.tags.tag, as `device enroll` does.
"""

from __future__ import annotations

import csv
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from core.config import Settings
from core.errors import MahavishnuError
from core.tags import parse_tags
from mahavishnu.cli.mesh import control_store
from mahavishnu.control import devices, tags
from mahavishnu.runtime.home import Home

COLUMNS = ("id", "transport", "site", "tags")


@dataclass(frozen=True)
class Row:
    line: int
    device_id: str
    transport: str = "nats"
    site: str | None = None
    tags: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class BadRow:
    line: int
    problem: str


def rows(text: str) -> list[Row | BadRow]:
    """The CSV's rows, each parsed or with its problem (pure)."""
    parsed: list[Row | BadRow] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        cells = [cell.strip() for cell in next(csv.reader([line]))]
        if number == 1 and cells[0].lower() == "id":
            continue  # a header
        parsed.append(_row(number, cells))
    return parsed


def _row(line: int, cells: list[str]) -> Row | BadRow:
    if len(cells) > len(COLUMNS):
        return BadRow(line, f"{len(cells)} columns: a row is {','.join(COLUMNS)} (tags as k=v;k2=v2)")
    device_id, transport, site, labels = (cells + [""] * len(COLUMNS))[: len(COLUMNS)]
    if not device_id:
        return BadRow(line, "no device id in the first column")
    if transport and transport not in devices.TRANSPORTS:
        return BadRow(line, f"unknown transport {transport!r}: use one of {', '.join(devices.TRANSPORTS)}")
    try:
        parsed = parse_tags(text for text in labels.split(";") if text) if labels else {}
    except MahavishnuError as exc:
        return BadRow(line, str(exc))
    return Row(line, device_id, transport or "nats", site or None, parsed)


async def enroll_all(
    home: Home, settings: Settings, csv_path: Path, out: Path, say: Callable[[str], None] | None = None
) -> tuple[int, list[BadRow]]:
    """Enrol every good row into `out`/<id>; (how many were enrolled, the rows that failed, in order)."""
    say = say or (lambda text: print(text, file=sys.stderr, flush=True))
    batch = rows(_read(csv_path))
    failed: list[BadRow] = []
    enrolled = 0
    async with control_store(home, settings, "device") as store:
        for position, row in enumerate(batch, start=1):
            if isinstance(row, BadRow):
                failed.append(row)
                say(f"[{position}/{len(batch)}] line {row.line}: error: {row.problem}")
                continue
            try:
                await devices.enroll(
                    home,
                    settings,
                    store,
                    row.device_id,
                    out_dir=out / row.device_id,
                    site=row.site,
                    transport=row.transport,
                )
                if row.tags:
                    await tags.tag(store, row.device_id, row.tags, actor="control")
            except MahavishnuError as exc:
                failed.append(BadRow(row.line, str(exc)))
                say(f"[{position}/{len(batch)}] line {row.line}: error: {exc}")
                continue
            enrolled += 1
            say(f"[{position}/{len(batch)}] enrolled {row.device_id}")
    return enrolled, failed


def _read(csv_path: Path) -> str:
    try:
        return csv_path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise MahavishnuError(f"cannot read {csv_path}: {reason}") from None
