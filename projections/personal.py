"""Which of a device's personal fields each role sees, and how (pure): the one rule every door keeps.

The personal fields (core.events.SEALED_DEVICE_FIELDS: owner and location) are sealed in
the streams and kept in the clear in the encrypted devices read model, so whatever reads
that model for a person decides here what leaves it. Both query doors (NATS
`mesh.q.devices.*`, HTTP `/api/devices...`, and so the dashboard) answer through the
device queries, which ask this module with the caller's role (ReadModels.role):

    role       owner      location
    admin      the value  the value
    operator   the value  the value
    auditor    "sealed"   "sealed"    that the field holds a value, never the value (null: it holds none)
    viewer     left out   left out    not even whether it holds one

A role the table does not name, no role at all, and a personal field added to
SEALED_DEVICE_FIELDS before a line here names it, all see nothing: a new door or field
that forgets the rule shows less, never more. The README's table is this one
(tests/projections/test_personal.py holds it to that).
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum
from typing import Any

from core.events import SEALED_DEVICE_FIELDS


class Sight(Enum):
    """How a role sees one personal field."""

    VALUE = "value"  # the value (or null when there is none)
    MARKED = "marked"  # SEALED_MARK when there is a value, null when there is none
    LEFT_OUT = "left out"  # the field is not in the answer


SEALED_MARK = "sealed"

RULE: Mapping[str, Mapping[str, Sight]] = {
    "admin": {"owner": Sight.VALUE, "location": Sight.VALUE},
    "operator": {"owner": Sight.VALUE, "location": Sight.VALUE},
    "auditor": {"owner": Sight.MARKED, "location": Sight.MARKED},
    "viewer": {"owner": Sight.LEFT_OUT, "location": Sight.LEFT_OUT},
}


def sight(role: str | None, field: str) -> Sight:
    """How `role` sees personal `field`; LEFT_OUT for a role or field the rule does not name."""
    return RULE.get(role or "", {}).get(field, Sight.LEFT_OUT)


def marked(value: object) -> str | None:
    """What a MARKED field reads: the mark when the field holds a value, else None."""
    return None if value is None else SEALED_MARK


def shown(role: str | None, device: Mapping[str, Any]) -> dict[str, Any]:
    """`device` (a document with its personal fields) as `role` may see it: each field per `sight`."""
    seen = {name: value for name, value in device.items() if name not in SEALED_DEVICE_FIELDS}
    for field in SEALED_DEVICE_FIELDS:
        how = sight(role, field)
        if how is Sight.VALUE:
            seen[field] = device.get(field)
        elif how is Sight.MARKED:
            seen[field] = marked(device.get(field))
    return seen
