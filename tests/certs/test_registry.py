"""The CA's registry as a value: an index grown one issue at a time answers as one built at once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from certs.registry import MAX_LAYERS, IssuedRecord, Registry

NOT_AFTER = datetime(2030, 1, 1, tzinfo=UTC)


def record(identity: str, serial: int) -> IssuedRecord:
    return IssuedRecord(identity=identity, kind="device", serial=serial, not_after=NOT_AFTER, fingerprint_sha256="")


@given(st.lists(st.sampled_from(["dev-a", "dev-b", "dev-c", "op-1"]), max_size=3 * MAX_LAYERS + 5))
def test_a_registry_grown_one_issue_at_a_time_has_the_histories_of_one_built_at_once(identities: list[str]) -> None:
    records = [record(identity, serial) for serial, identity in enumerate(identities, 1)]
    grown = Registry()
    snapshots = []
    for one in records:
        snapshots.append(grown)
        grown = grown.with_issued(one)
    whole = Registry(tuple(records))
    for identity in ("dev-a", "dev-b", "dev-c", "op-1", "nobody"):
        assert grown.history(identity) == whole.history(identity)
    # every earlier registry still answers as it did: adding never changes a registry
    for count, snapshot in enumerate(snapshots):
        assert snapshot.history("dev-a") == [r for r in records[:count] if r.identity == "dev-a"]


def test_live_skips_expired_records_whatever_was_added_after() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    expired = IssuedRecord(
        identity="dev-a", kind="device", serial=1, not_after=now - timedelta(days=1), fingerprint_sha256=""
    )
    registry = Registry((expired,)).with_issued(record("dev-a", 2)).with_issued(record("dev-a", 3))
    assert [r.serial for r in registry.live("dev-a", now)] == [2, 3]
