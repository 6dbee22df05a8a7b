"""Conditions of TUF's client workflow (specification 1.0, section 5), on metadata crafted here, as python-tuf's
own tests craft it: each must end in the right Refusal. No server: a fetcher over a dict stands for the bucket."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from securesystemslib.signer import CryptoSigner
from tuf.api.exceptions import DownloadHTTPError
from tuf.api.metadata import Metadata, MetaFile, Root, Snapshot, TargetFile, Targets, Timestamp
from tuf.api.serialization.json import JSONSerializer
from tuf.ngclient import FetcherInterface

from edge.updates.errors import Refusal, UpdateRefused
from edge.updates.fetcher import BASE_URL
from edge.updates.trust import verify

NOW = datetime.now(UTC).replace(microsecond=0)
LATER = NOW + timedelta(days=30)
TARGET = "app/1.0"


class DictFetcher(FetcherInterface):
    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files

    def _fetch(self, url: str) -> Iterator[bytes]:
        name = url.removeprefix(BASE_URL)
        if name not in self.files:
            raise DownloadHTTPError(f"{name} not found", 404)
        return iter((self.files[name],))


def _bytes(metadata: Metadata[Any]) -> bytes:
    return JSONSerializer(compact=True).serialize(metadata)


class Repository:
    """A TUF repository built by hand: one key per role unless told, every file re-made on demand."""

    def __init__(self) -> None:
        self.signers = {
            role: [CryptoSigner.generate_ed25519()] for role in ("root", "targets", "snapshot", "timestamp")
        }
        self.files: dict[str, bytes] = {}
        self.root = Root(expires=LATER)
        for role, signers in self.signers.items():
            for signer in signers:
                self.root.add_key(signer.public_key, role)
        self.publish_root(self.root, self.signers["root"])
        self.targets = Targets(expires=LATER, targets={TARGET: self.target()})
        self.snapshot_version = 0
        self.timestamp_version = 0
        self.publish()

    @staticmethod
    def target() -> TargetFile:
        custom = {"custom": {"name": "app", "version": "1.0", "device_type": "pump", "depends": []}}
        return TargetFile(3, {"sha256": "cd" * 32}, TARGET, custom)

    def publish_root(self, root: Root, signers: list[CryptoSigner]) -> None:
        signed = Metadata(root)
        for signer in signers:
            signed.sign(signer, append=True)
        self.files[f"{root.version}.root.json"] = _bytes(signed)

    def sign(self, signed: Any, role: str, signers: list[CryptoSigner] | None = None) -> bytes:
        metadata = Metadata(signed)
        for signer in self.signers[role] if signers is None else signers:
            metadata.sign(signer, append=True)
        return _bytes(metadata)

    def publish(
        self,
        *,
        snapshot_expires: datetime = LATER,
        timestamp_expires: datetime = LATER,
        targets_meta: int | None = None,
    ) -> None:
        """Sign targets, a new snapshot naming it (or `targets_meta` as its version) and a new timestamp."""
        targets = self.sign(self.targets, "targets")
        self.files[f"{self.targets.version}.targets.json"] = targets
        self.snapshot_version += 1
        meta = MetaFile(targets_meta) if targets_meta else MetaFile.from_data(self.targets.version, targets, ["sha256"])
        snapshot = self.sign(
            Snapshot(self.snapshot_version, expires=snapshot_expires, meta={"targets.json": meta}), "snapshot"
        )
        self.files[f"{self.snapshot_version}.snapshot.json"] = snapshot
        self.publish_timestamp(snapshot, timestamp_expires)

    def publish_timestamp(
        self, snapshot: bytes, expires: datetime = LATER, snapshot_version: int | None = None
    ) -> None:
        self.timestamp_version += 1
        meta = MetaFile.from_data(snapshot_version or self.snapshot_version, snapshot, ["sha256"])
        self.files["timestamp.json"] = self.sign(
            Timestamp(self.timestamp_version, expires=expires, snapshot_meta=meta), "timestamp"
        )

    def trusted(self, folder: Path) -> Path:
        folder.mkdir()
        (folder / "root.json").write_bytes(self.files["1.root.json"])
        return folder


@pytest.fixture
def repo() -> Repository:
    return Repository()


async def check(repo: Repository, trusted: Path) -> None:
    await verify(
        DictFetcher(repo.files), trusted, name="app", version="1.0", device_type="pump", installed_version=None
    )


async def refusal(repo: Repository, trusted: Path) -> UpdateRefused:
    with pytest.raises(UpdateRefused) as caught:
        await check(repo, trusted)
    return caught.value


async def test_a_well_made_repository_verifies(repo: Repository, tmp_path: Path) -> None:
    await check(repo, repo.trusted(tmp_path / "trusted"))


async def test_5_3_4_a_new_root_must_be_signed_by_the_trusted_roots_keys(repo: Repository, tmp_path: Path) -> None:
    trusted = repo.trusted(tmp_path / "trusted")
    usurper = CryptoSigner.generate_ed25519()
    rotated = Root.from_dict(copy.deepcopy(repo.root.to_dict()))
    rotated.version = 2
    rotated.revoke_key(repo.signers["root"][0].public_key.keyid, "root")
    rotated.add_key(usurper.public_key, "root")
    repo.publish_root(rotated, [usurper])  # signed by its own new key only

    assert (await refusal(repo, trusted)).refusal is Refusal.SIGNATURES


async def test_5_3_4_a_root_rotation_signed_by_old_and_new_keys_is_followed(repo: Repository, tmp_path: Path) -> None:
    trusted = repo.trusted(tmp_path / "trusted")
    successor = CryptoSigner.generate_ed25519()
    new_timestamp = CryptoSigner.generate_ed25519()
    rotated = Root.from_dict(copy.deepcopy(repo.root.to_dict()))
    rotated.version = 2
    rotated.revoke_key(repo.signers["root"][0].public_key.keyid, "root")
    rotated.add_key(successor.public_key, "root")
    rotated.revoke_key(repo.signers["timestamp"][0].public_key.keyid, "timestamp")
    rotated.add_key(new_timestamp.public_key, "timestamp")
    repo.publish_root(rotated, [repo.signers["root"][0], successor])
    repo.signers["timestamp"] = [new_timestamp]
    repo.publish()

    await check(repo, trusted)
    assert Metadata[Root].from_bytes((trusted / "root.json").read_bytes()).signed.version == 2


async def test_5_3_5_a_root_file_of_another_version_is_refused(repo: Repository, tmp_path: Path) -> None:
    trusted = repo.trusted(tmp_path / "trusted")
    skipped = Root.from_dict(copy.deepcopy(repo.root.to_dict()))
    skipped.version = 3
    repo.files["2.root.json"] = repo.sign(skipped, "root")

    assert (await refusal(repo, trusted)).refusal is Refusal.MIX_AND_MATCH


async def test_5_3_10_an_expired_root_is_a_freeze(repo: Repository, tmp_path: Path) -> None:
    stale = Root.from_dict(copy.deepcopy(repo.root.to_dict()))
    stale.expires = NOW - timedelta(days=1)
    repo.publish_root(stale, repo.signers["root"])

    frozen = await refusal(repo, repo.trusted(tmp_path / "trusted"))
    assert frozen.refusal is Refusal.FREEZE
    assert "root.json is expired" in str(frozen)


async def test_5_4_3_a_timestamp_naming_an_older_snapshot_is_a_rollback(repo: Repository, tmp_path: Path) -> None:
    trusted = repo.trusted(tmp_path / "trusted")
    repo.publish()  # snapshot 2
    await check(repo, trusted)
    repo.publish_timestamp(repo.files["1.snapshot.json"], snapshot_version=1)

    rollback = await refusal(repo, trusted)
    assert rollback.refusal is Refusal.ROLLBACK
    assert "New snapshot version must be >= 2" in str(rollback)


async def test_5_4_4_an_expired_snapshot_is_a_freeze(repo: Repository, tmp_path: Path) -> None:
    repo.publish(snapshot_expires=NOW - timedelta(minutes=1))

    assert (await refusal(repo, repo.trusted(tmp_path / "trusted"))).refusal is Refusal.FREEZE


async def test_5_5_2_a_snapshot_not_matching_the_timestamps_hash_is_mix_and_match(
    repo: Repository, tmp_path: Path
) -> None:
    other = Snapshot(repo.snapshot_version, expires=LATER, meta={"targets.json": MetaFile(1)})
    repo.files[f"{repo.snapshot_version}.snapshot.json"] = repo.sign(other, "snapshot")

    assert (await refusal(repo, repo.trusted(tmp_path / "trusted"))).refusal is Refusal.MIX_AND_MATCH


async def test_5_5_5_a_snapshot_naming_an_older_targets_is_a_rollback(repo: Repository, tmp_path: Path) -> None:
    trusted = repo.trusted(tmp_path / "trusted")
    repo.targets.version = 2
    repo.publish()
    await check(repo, trusted)
    repo.targets.version = 1
    repo.publish()

    assert (await refusal(repo, trusted)).refusal is Refusal.ROLLBACK


async def test_5_6_3_a_targets_file_of_another_version_than_the_snapshot_names_is_mix_and_match(
    repo: Repository, tmp_path: Path
) -> None:
    repo.targets.version = 2
    repo.files["2.targets.json"] = repo.sign(Targets(1, expires=LATER, targets={TARGET: repo.target()}), "targets")
    repo.snapshot_version += 1
    snapshot = repo.sign(Snapshot(repo.snapshot_version, expires=LATER, meta={"targets.json": MetaFile(2)}), "snapshot")
    repo.files[f"{repo.snapshot_version}.snapshot.json"] = snapshot
    repo.publish_timestamp(snapshot)

    mixed = await refusal(repo, repo.trusted(tmp_path / "trusted"))
    assert mixed.refusal is Refusal.MIX_AND_MATCH
    assert "Expected targets v2, got v1" in str(mixed)


async def test_a_threshold_of_two_is_not_met_by_one_signature(repo: Repository, tmp_path: Path) -> None:
    second = CryptoSigner.generate_ed25519()
    two = Root.from_dict(copy.deepcopy(repo.root.to_dict()))
    two.version = 2
    two.add_key(second.public_key, "targets")
    two.roles["targets"].threshold = 2
    repo.publish_root(two, repo.signers["root"])
    repo.targets.version = 2
    repo.publish()  # targets signed by its first key only

    short = await refusal(repo, repo.trusted(tmp_path / "trusted"))
    assert short.refusal is Refusal.SIGNATURES
    assert "targets was signed by 1/2 keys" in str(short)
