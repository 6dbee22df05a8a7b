"""How the signed metadata is kept (pure): the roles, their keys and thresholds, how long each file lives.

TUF's four top-level roles sign different things and are kept differently:

    root       the keys and thresholds of every role; rarely changed, its keys offline if you can
    targets    which artifacts exist (name/version, length, SHA-256, device type, depends);
               signed when an artifact is added or removed, its keys may be offline
    snapshot   the version (and hash) of the targets file of this moment: no mix-and-match
    timestamp  the version (and hash) of the newest snapshot, re-signed often: no freeze

Snapshot and timestamp are signed by the mesh itself (online keys, under $MAHAVISHNU_HOME),
so their lives are short; root and targets live long enough to be signed by hand.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from core.errors import MahavishnuError

ROOT, TARGETS, SNAPSHOT, TIMESTAMP = "root", "targets", "snapshot", "timestamp"
ROLES = (ROOT, TARGETS, SNAPSHOT, TIMESTAMP)
# Root and targets may be kept offline: their keys can live away from the mesh.
OFFLINE_CAPABLE = (ROOT, TARGETS)

# How long a newly signed file of each role is valid. A device refuses expired metadata
# (freeze), so the online roles are re-signed well before (refresh_due) by `up`.
LIFETIME = {
    ROOT: timedelta(days=365),
    TARGETS: timedelta(days=365),  # long: an offline key is not at hand every week
    SNAPSHOT: timedelta(days=7),
    TIMESTAMP: timedelta(days=1),
}
MAX_KEYS = 16


class TrustError(MahavishnuError):
    """The trust (signed metadata, keys) cannot do what was asked; the message says what to do."""


@dataclass(frozen=True)
class RoleKeys:
    """A role's k-of-n: `count` keys, `threshold` of which must sign."""

    threshold: int = 1
    count: int = 1

    def __post_init__(self) -> None:
        if not 1 <= self.count <= MAX_KEYS:
            raise TrustError(f"a role has 1 to {MAX_KEYS} keys, not {self.count}")
        if not 1 <= self.threshold <= self.count:
            raise TrustError(f"a threshold is 1 to the number of keys ({self.count}), not {self.threshold}")


@dataclass(frozen=True)
class KeyPlan:
    """The keys `trust init` makes for each role."""

    root: RoleKeys = RoleKeys()
    targets: RoleKeys = RoleKeys()
    snapshot: RoleKeys = RoleKeys()
    timestamp: RoleKeys = RoleKeys()

    def of(self, role: str) -> RoleKeys:
        keys: RoleKeys = getattr(self, role)
        return keys


def expires(role: str, now: datetime) -> datetime:
    """When a file of `role` signed at `now` expires, to the second (TUF's format has no fractions)."""
    return (now + LIFETIME[role]).replace(microsecond=0)


def refresh_due(role: str, expiry: datetime, now: datetime) -> bool:
    """Whether an online role's file should be re-signed now: less than half its life left.

    Half leaves the mesh a whole half-life of failed attempts (a mesh down for hours) before
    a device would see the file expire.
    """
    return expiry - now < LIFETIME[role] / 2
