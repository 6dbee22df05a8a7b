"""The CA's memory of what it signed and revoked, as immutable values with a JSON form.

On disk (in the CA directory):
    issued.jsonl      one line per issued certificate, appended as it is issued:
                      {identity, serial, kind, not_after, fingerprint_sha256}
    revocations.json  [{serial, identity, revoked_at, reason}, ...]
Times are ISO 8601 in UTC. Issuing appends one line, so the cost of one more certificate
does not grow with the fleet; revocations are rare and rewrite their file. (Meshes made
before keep an issued.json, {identity: [record, ...]}, which the CA converts once.)
This module is pure: `authority` reads and writes the files.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from certs.errors import CorruptCAError, InvalidIdError
from certs.names import parse_reason


@dataclass(frozen=True, kw_only=True)
class IssuedRecord:
    """One certificate the CA signed; `revoked` reflects revocations.json."""

    identity: str
    kind: str
    serial: int
    not_after: datetime
    fingerprint_sha256: str
    revoked: bool = False

    def is_live(self, now: datetime) -> bool:
        """Neither revoked nor expired at `now`: it still opens the mesh."""
        return not self.revoked and self.not_after > now


@dataclass(frozen=True, kw_only=True)
class RevocationEntry:
    """One revoked certificate: its serial, whose it was, when and why (a CRL reason name)."""

    serial: int
    identity: str
    revoked_at: datetime
    reason: str


@dataclass(frozen=True)
class Registry:
    """Every issued certificate in issue order, and every revocation in revocation order.

    `by_identity` indexes the records by identity, so asking for one identity's history costs
    its own records, not the registry's: every enrolment asks (a live certificate already?),
    and scanning 10,000 records for it was the provisioning service's largest cost.
    """

    issued: tuple[IssuedRecord, ...] = ()
    revocations: tuple[RevocationEntry, ...] = ()
    by_identity: Index = field(default_factory=lambda: Index.of(()), compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.issued and self.by_identity.empty():
            object.__setattr__(self, "by_identity", Index.of(self.issued))

    def with_issued(self, record: IssuedRecord) -> Registry:
        """This registry plus one issued certificate."""
        return self.with_issued_many((record,))

    def with_issued_many(self, records: Iterable[IssuedRecord]) -> Registry:
        """This registry plus certificates issued since (none of them revoked yet)."""
        added = tuple(records)
        if not added:
            return self
        return Registry(self.issued + added, self.revocations, self.by_identity.plus(added))

    def with_revoked(self, entries: Iterable[RevocationEntry]) -> Registry:
        """This registry with `entries` revoked (their records marked revoked)."""
        revocations = (*self.revocations, *entries)
        serials = {r.serial for r in revocations}
        # only the records that change are copied: loading a CA of 10,000 certificates stays cheap
        issued = tuple(replace(r, revoked=True) if r.serial in serials and not r.revoked else r for r in self.issued)
        return Registry(issued, revocations)

    def is_revoked(self, serial: int) -> bool:
        """Whether `serial` is on the revocation list."""
        return any(r.serial == serial for r in self.revocations)

    def history(self, identity: str) -> list[IssuedRecord]:
        """Every certificate ever issued to `identity`, oldest first."""
        return list(self.by_identity.get(identity))

    def live(self, identity: str, now: datetime) -> list[IssuedRecord]:
        """The certificates of `identity` that are neither revoked nor expired at `now`."""
        return [r for r in self.history(identity) if r.is_live(now)]

    def revocations_json(self) -> list[dict[str, Any]]:
        """The JSON value of revocations.json."""
        return [
            {"serial": r.serial, "identity": r.identity, "revoked_at": r.revoked_at.isoformat(), "reason": r.reason}
            for r in self.revocations
        ]


# How many small layers an index may hold above its base before they are merged into it:
# a lookup costs a dictionary lookup per layer, a merge a copy of the base.
MAX_LAYERS = 32


@dataclass(frozen=True)
class Index:
    """Issued records by identity, never changed once made: adding makes a new index.

    An issue adds one record to a registry of thousands, at every enrolment, twice (the CA
    that issues it, and the next load that reads its line). Copying the whole dictionary
    for it was O(fleet); the new records go into a small layer of their own above the
    previous index's, and every MAX_LAYERS additions the layers are merged into one
    dictionary (a copy: O(fleet) / MAX_LAYERS a record).
    """

    base: dict[str, tuple[IssuedRecord, ...]]
    layers: tuple[dict[str, tuple[IssuedRecord, ...]], ...] = ()  # newest first

    @classmethod
    def of(cls, records: Iterable[IssuedRecord]) -> Index:
        base: dict[str, tuple[IssuedRecord, ...]] = {}
        for record in records:
            base[record.identity] = (*base.get(record.identity, ()), record)
        return cls(base)

    def empty(self) -> bool:
        return not self.base and not self.layers

    def get(self, identity: str) -> tuple[IssuedRecord, ...]:
        for layer in self.layers:
            found = layer.get(identity)
            if found is not None:
                return found
        return self.base.get(identity, ())

    def plus(self, records: tuple[IssuedRecord, ...]) -> Index:
        layer: dict[str, tuple[IssuedRecord, ...]] = {}
        for record in records:
            layer[record.identity] = (*(layer.get(record.identity) or self.get(record.identity)), record)
        if len(self.layers) < MAX_LAYERS:
            return Index(self.base, (layer, *self.layers))
        base = dict(self.base)
        for older in (*reversed(self.layers), layer):
            base.update(older)
        return Index(base)


def issued_line(record: IssuedRecord) -> bytes:
    """One line of issued.jsonl (pure)."""
    value = {
        "identity": record.identity,
        "serial": record.serial,
        "kind": record.kind,
        "not_after": record.not_after.isoformat(),
        "fingerprint_sha256": record.fingerprint_sha256,
    }
    return json.dumps(value, sort_keys=True).encode() + b"\n"


def issued_from_lines(data: bytes, where: str) -> tuple[tuple[IssuedRecord, ...], int]:
    """The records of whole lines of issued.jsonl, and how many bytes they took (pure).

    A last line without its newline is a write a crash cut short: it is left unread (and
    its certificate was never handed out). Raises CorruptCAError for a damaged line.
    """
    whole = data[: data.rfind(b"\n") + 1]
    records = []
    for number, line in enumerate(whole.splitlines(), 1):
        if not line.strip():
            continue
        try:
            r = json.loads(line)
            records.append(_record(str(r["identity"]), r))
        except (TypeError, KeyError, ValueError, AttributeError) as exc:
            raise CorruptCAError(
                f"{where}/issued.jsonl line {number} is malformed ({exc!r}); restore it from a backup"
            ) from exc
    return tuple(records), len(whole)


def _record(identity: str, r: Any) -> IssuedRecord:
    return IssuedRecord(
        identity=identity,
        kind=str(r["kind"]),
        serial=int(r["serial"]),
        not_after=datetime.fromisoformat(r["not_after"]),
        fingerprint_sha256=str(r["fingerprint_sha256"]),
    )


def revocations_from_json(revocations: Any, where: str) -> tuple[RevocationEntry, ...]:
    """The entries of revocations.json (pure); CorruptCAError naming the file when a value has the wrong shape."""
    try:
        return tuple(
            RevocationEntry(
                serial=int(r["serial"]),
                identity=str(r["identity"]),
                revoked_at=datetime.fromisoformat(r["revoked_at"]),
                reason=parse_reason(str(r["reason"])).name,
            )
            for r in revocations
        )
    except (TypeError, KeyError, ValueError, InvalidIdError) as exc:
        raise CorruptCAError(f"{where}/revocations.json is malformed ({exc!r}); restore it from a backup") from exc


def legacy_issued_from_json(issued: Any, where: str) -> tuple[IssuedRecord, ...]:
    """The records of a mesh's old issued.json, {identity: [record, ...]} (pure); CorruptCAError when damaged."""
    try:
        return tuple(_record(str(identity), r) for identity, rows in issued.items() for r in rows)
    except (TypeError, KeyError, ValueError, AttributeError) as exc:
        raise CorruptCAError(f"{where}/issued.json is malformed ({exc!r}); restore it from a backup") from exc
