"""The TUF metadata files of the mesh, made and checked (pure: python-tuf's Metadata API, no files, no NATS).

Every file has a version and an expiry; root uses consistent snapshots, so each version of
root, targets and snapshot is stored under its own name ("3.targets.json", as the TUF
specification names them) and only timestamp.json is replaced in place.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from securesystemslib.signer import Key, Signature
from tuf.api.metadata import (
    Metadata,
    MetaFile,
    Role,
    Root,
    Snapshot,
    TargetFile,
    Targets,
    Timestamp,
    VerificationResult,
)
from tuf.api.serialization.json import JSONSerializer

from core.updates.naming import target_path
from mahavishnu.updates.trust.policy import ROLES, ROOT, SNAPSHOT, TARGETS, TIMESTAMP, KeyPlan, TrustError, expires

_SERIALIZER = JSONSerializer(compact=True)


def file_name(role: str, version: int) -> str:
    """The file's (and the bucket key's) name: "<version>.<role>.json", but "timestamp.json"."""
    return "timestamp.json" if role == TIMESTAMP else f"{version}.{role}.json"


def to_bytes(metadata: Metadata[Any]) -> bytes:
    return _SERIALIZER.serialize(metadata)


def new_root(keys: Mapping[str, Iterable[Key]], plan: KeyPlan, now: datetime) -> Metadata[Root]:
    """Version 1 of root: each role's public keys and threshold, consistent snapshots (unsigned)."""
    root = Root(version=1, expires=expires(ROOT, now), consistent_snapshot=True)
    for role in ROLES:
        root.roles[role] = Role([], plan.of(role).threshold)
        for key in keys[role]:
            root.add_key(key, role)
    return Metadata(root)


def target_file(
    *, name: str, version: str, length: int, sha256: str, device_type: str, depends: Iterable[str]
) -> TargetFile:
    """An artifact as a TUF target: its path name/version, length and SHA-256, and in `custom` what a device checks."""
    custom = {"name": name, "version": version, "device_type": device_type, "depends": list(depends)}
    return TargetFile(length, {"sha256": sha256}, target_path(name, version), {"custom": custom})


def next_targets(
    current: Targets | None, now: datetime, *, add: TargetFile | None = None, remove: str | None = None
) -> Metadata[Targets]:
    """The next version of targets: `current`'s targets with `add` added (or replaced) and `remove` taken out."""
    targets = Targets(version=1 if current is None else current.version + 1, expires=expires(TARGETS, now))
    if current is not None:
        targets.targets = dict(current.targets)
    if add is not None:
        targets.targets[add.path] = add
    if remove is not None:
        targets.targets.pop(remove, None)
    return Metadata(targets)


def next_snapshot(current: Snapshot | None, targets: bytes, targets_version: int, now: datetime) -> Metadata[Snapshot]:
    """The next snapshot: the targets file's version, length and hash, so no other targets file can be mixed in."""
    snapshot = Snapshot(version=1 if current is None else current.version + 1, expires=expires(SNAPSHOT, now))
    snapshot.meta = {"targets.json": MetaFile.from_data(targets_version, targets, ["sha256"])}
    return Metadata(snapshot)


def next_timestamp(
    current: Timestamp | None, snapshot: bytes, snapshot_version: int, now: datetime
) -> Metadata[Timestamp]:
    """The next timestamp: the newest snapshot's version, length and hash."""
    meta = MetaFile.from_data(snapshot_version, snapshot, ["sha256"])
    version = 1 if current is None else current.version + 1
    return Metadata(Timestamp(version=version, expires=expires(TIMESTAMP, now), snapshot_meta=meta))


def verification(root: Root, metadata: Metadata[Any]) -> VerificationResult:
    """Which of the role's keys signed `metadata` (valid signatures only), and how many are needed."""
    return root.get_verification_result(metadata.signed.type, metadata.signed_bytes, metadata.signatures)


def add_signature(root: Root, metadata: Metadata[Any], signature: Signature) -> None:
    """Add a signature made elsewhere (an offline key); TrustError when it is not a valid one of the role's keys."""
    role = metadata.signed.type
    if signature.keyid not in root.roles[role].keyids:
        raise TrustError(
            f"key {signature.keyid[:12]} is not one of the {role} keys: sign with a key listed by `artifact trust show`"
        )
    key = root.get_key(signature.keyid)
    try:
        key.verify_signature(signature, metadata.signed_bytes)
    except Exception:  # securesystemslib's UnverifiedSignatureError or VerificationError: either way, not valid
        raise TrustError(
            f"the signature of key {signature.keyid[:12]} does not match the staged {role} metadata: "
            "it was made over another file (sign the current staged file again)"
        ) from None
    metadata.signatures[signature.keyid] = signature
