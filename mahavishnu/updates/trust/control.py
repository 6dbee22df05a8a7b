"""The trust's operations: initialise it, add and withdraw targets, sign offline, refresh before expiry.

Each change is made under the trust's lock on the signer's copy (trust/repository, local.py),
then published to the tuf bucket with its events (publish.py). The targets role is signed
at once when the mesh holds enough of its keys (online); otherwise the new targets waits in
trust/staged/targets.json until `artifact sign` brings the missing signatures, and the
devices keep the previous targets meanwhile. Snapshot and timestamp are always the mesh's
to sign: every new targets gets a new snapshot and timestamp with it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from nats.js import JetStreamContext
from securesystemslib.signer import Signature
from tuf.api.exceptions import RepositoryError
from tuf.api.metadata import Metadata, Root, Snapshot, TargetFile, Targets, Timestamp, VerificationResult

from core.events import TrustMetadataPublished
from core.store import EventStore
from core.updates import naming
from mahavishnu.runtime.home import Home
from mahavishnu.updates.trust import keys, metadata
from mahavishnu.updates.trust.local import TrustFiles
from mahavishnu.updates.trust.policy import (
    OFFLINE_CAPABLE,
    ROLES,
    ROOT,
    SNAPSHOT,
    TARGETS,
    TIMESTAMP,
    KeyPlan,
    TrustError,
    refresh_due,
)
from mahavishnu.updates.trust.publish import publish

AUDIT = "updates"  # the audit trail's category of the operators' steps on the trust (signatures, rotations)


@dataclass(frozen=True)
class Waiting:
    """A staged targets file short of signatures: which version, how many signed, how many needed."""

    version: int
    signed: int
    threshold: int


@dataclass(frozen=True)
class Outcome:
    published: tuple[TrustMetadataPublished, ...] = ()
    waiting: Waiting | None = None


@dataclass
class State:
    root: Metadata[Root]
    targets: Metadata[Targets]
    snapshot: Metadata[Snapshot]
    timestamp: Metadata[Timestamp]
    names: dict[str, str] = field(default_factory=dict)  # role -> its file's name


def trust_files(home: Home) -> TrustFiles:
    return TrustFiles.of(home.root)


async def initialise(
    home: Home, plan: KeyPlan | None = None, *, offline_dir: Path | None = None, now: datetime | None = None
) -> Metadata[Root]:
    """Make every role's keys and version 1 of the four files in trust/repository (not published: see publish).

    With `offline_dir`, root's and targets' private keys are written there (take that folder
    away from the mesh) and the mesh keeps only snapshot's and timestamp's. TrustError when
    the trust is initialised already.
    """
    plan = plan or KeyPlan()
    now = now or datetime.now(UTC)
    files = trust_files(home)
    async with files.locked():
        if files.initialised():
            raise TrustError(
                f"the trust is initialised already ({files.repository}): "
                "see `mahavishnu artifact trust show`; a new root needs a root rotation"
            )
        signers = {role: [keys.generate() for _ in range(plan.of(role).count)] for role in ROLES}
        for role, role_signers in signers.items():
            folder = offline_dir if offline_dir is not None and role in OFFLINE_CAPABLE else files.keys
            for signer in role_signers:
                keys.save(signer, folder, role)
        root = metadata.new_root(
            {role: [s.public_key for s in role_signers] for role, role_signers in signers.items()}, plan, now
        )
        targets = metadata.next_targets(None, now)
        for signed, role in ((root, ROOT), (targets, TARGETS)):
            for signer in signers[role]:
                signed.sign(signer, append=True)
        files.write(metadata.file_name(ROOT, 1), metadata.to_bytes(root))
        files.write(metadata.file_name(TARGETS, 1), metadata.to_bytes(targets))
        state = State(root=root, targets=targets, snapshot=None, timestamp=None)  # type: ignore[arg-type]
        commit_snapshot(files, state, metadata.to_bytes(targets), now)
    return root


async def ensure_initialised(home: Home) -> bool:
    """Initialise the trust with one online key per role if it never was (`up` does, so every device gets a root)."""
    if trust_files(home).initialised():
        return False
    try:
        await initialise(home)
    except TrustError:  # another process initialised it meanwhile
        return False
    return True


async def stage_target(
    home: Home,
    js: JetStreamContext,
    store: EventStore,
    *,
    name: str,
    version: str,
    length: int,
    sha256: str,
    device_type: str,
    depends: Iterable[str] = (),
    actor: str,
    now: datetime | None = None,
) -> Outcome:
    """Add an artifact to the signed targets: signed and published at once with online targets keys, else staged.

    `artifact add` calls it after storing the bytes. Adding the same target again changes
    nothing. TrustError when the trust was never initialised (`artifact trust init` or `up`).
    """
    naming.device_type(device_type)
    target = metadata.target_file(
        name=name, version=version, length=length, sha256=sha256, device_type=device_type, depends=depends
    )
    return await _change_targets(home, js, store, actor=actor, now=now, add=target)


async def withdraw_target(
    home: Home,
    js: JetStreamContext,
    store: EventStore,
    *,
    name: str,
    version: str,
    actor: str,
    now: datetime | None = None,
) -> Outcome:
    """Take an artifact out of the signed targets (`artifact remove`); nothing when it is not in them."""
    return await _change_targets(home, js, store, actor=actor, now=now, remove=naming.target_path(name, version))


async def _change_targets(
    home: Home,
    js: JetStreamContext,
    store: EventStore,
    *,
    actor: str,
    now: datetime | None,
    add: TargetFile | None = None,
    remove: str | None = None,
) -> Outcome:
    now = now or datetime.now(UTC)
    files = trust_files(home)
    async with files.locked():
        state = load_state(files)
        staged = staged_targets(files)
        # The staged file holds the changes not yet signed: the next change builds on it.
        base = staged.signed if staged is not None else state.targets.signed
        unchanged = (add is None or base.targets.get(add.path) == add) and (
            remove is None or remove not in base.targets
        )
        if unchanged:
            waiting = None if staged is None else _waiting(state.root.signed, staged)
            return Outcome(published=tuple(await publish(files, js, store, actor=actor)), waiting=waiting)
        content = Targets(version=state.targets.signed.version, targets=dict(base.targets))
        new = metadata.next_targets(content, now, add=add, remove=remove)
        waiting = _sign_or_stage(files, state, new, now)
    return Outcome(published=tuple(await publish(files, js, store, actor=actor)), waiting=waiting)


def _sign_or_stage(files: TrustFiles, state: State, new: Metadata[Targets], now: datetime) -> Waiting | None:
    result = sign_online(files, state.root.signed, new, TARGETS)
    if result.verified:
        commit_targets(files, state, new, now)
        files.drop_staged()
        return None
    files.write_staged(metadata.to_bytes(new))
    return Waiting(new.signed.version, len(result.signed), result.threshold)


def sign_file(data: bytes, key: Path) -> dict[str, Any]:
    """Sign a staged metadata file with the key file `key`, where the key is (no mesh needed).

    The answer is the signature document `artifact trust add-signature` takes:
    {"role", "version", "signature": {"keyid", "sig"}}. TrustError when `data` is not a
    metadata file or the key cannot be read.
    """
    try:
        staged = Metadata[Any].from_bytes(data)
    except RepositoryError as exc:
        raise TrustError(f"not a TUF metadata file ({exc}): give the staged targets.json") from None
    signer = keys.load(key)
    signature = signer.sign(staged.signed_bytes)
    return {"role": staged.signed.type, "version": staged.signed.version, "signature": signature.to_dict()}


def read_signature(document: Any, source: str) -> Signature:
    """The signature in a document of sign_file's shape; TrustError naming `source` otherwise."""
    try:
        return Signature.from_dict(dict(document["signature"]))
    except (KeyError, TypeError, ValueError):
        raise TrustError(f"{source} is not a signature made by `mahavishnu artifact sign --out`") from None


async def add_signatures(
    home: Home,
    js: JetStreamContext,
    store: EventStore,
    signatures: Sequence[Signature],
    *,
    actor: str,
    now: datetime | None = None,
) -> Outcome:
    """Add offline signatures to the staged targets; once they reach the threshold it is published.

    TrustError when nothing is staged, or a signature is not a valid one of a targets key
    over the staged file (made over an older staged file, or by a stranger's key).
    """
    now = now or datetime.now(UTC)
    files = trust_files(home)
    async with files.locked():
        state = load_state(files)
        staged = staged_targets(files)
        if staged is None:
            raise TrustError("no targets metadata waits for signatures: nothing to sign")
        given = {"version": staged.signed.version, "keys": [signature.keyid for signature in signatures]}
        try:
            for signature in signatures:
                metadata.add_signature(state.root.signed, staged, signature)
        except TrustError as refused:
            await store.audit.record(
                actor=actor,
                category=AUDIT,
                action="trust.sign",
                target=TARGETS,
                outcome="denied",
                details=given | {"reason": str(refused)},
            )
            raise
        result = metadata.verification(state.root.signed, staged)
        await store.audit.record(
            actor=actor,
            category=AUDIT,
            action="trust.sign",
            target=TARGETS,
            details=given | {"signed": len(result.signed), "threshold": result.threshold},
        )
        if result.verified:
            commit_targets(files, state, staged, now)
            files.drop_staged()
            waiting = None
        else:
            files.write_staged(metadata.to_bytes(staged))
            waiting = Waiting(staged.signed.version, len(result.signed), result.threshold)
    return Outcome(published=tuple(await publish(files, js, store, actor=actor)), waiting=waiting)


async def refresh(
    home: Home, js: JetStreamContext, store: EventStore, *, actor: str = "system", now: datetime | None = None
) -> Outcome:
    """Re-sign what is due before it expires, then publish: `up` calls it at start and then periodically.

    Targets only when the mesh holds its keys (an offline targets file is the operator's to
    re-sign: `artifact trust show` says when it expires); otherwise snapshot, or timestamp.
    Nothing when the trust was never initialised.
    """
    now = now or datetime.now(UTC)
    files = trust_files(home)
    if not files.initialised():
        return Outcome()
    async with files.locked():
        state = load_state(files)
        renewed = None
        if refresh_due(TARGETS, state.targets.signed.expires, now):
            renewed = metadata.next_targets(state.targets.signed, now)
            if not sign_online(files, state.root.signed, renewed, TARGETS).verified:
                renewed = None  # offline keys: the operator's to re-sign; snapshot and timestamp go on
        if renewed is not None:
            commit_targets(files, state, renewed, now)
        elif refresh_due(SNAPSHOT, state.snapshot.signed.expires, now):
            commit_snapshot(files, state, (files.repository / state.names[TARGETS]).read_bytes(), now)
        elif refresh_due(TIMESTAMP, state.timestamp.signed.expires, now):
            snapshot = (files.repository / state.names[SNAPSHOT]).read_bytes()
            _commit_timestamp(files, state, snapshot, state.snapshot.signed.version, now)
    return Outcome(published=tuple(await publish(files, js, store, actor=actor)))


async def publish_all(home: Home, js: JetStreamContext, store: EventStore, *, actor: str) -> Outcome:
    """Publish what trust/repository holds and the bucket not yet (after `trust init` without a mesh)."""
    files = trust_files(home)
    async with files.locked():
        return Outcome(published=tuple(await publish(files, js, store, actor=actor)))


def summary(home: Home) -> dict[str, Any]:
    """What `artifact trust show` prints: each role's version, expiry, threshold and keys; what is staged."""
    files = trust_files(home)
    state = load_state(files)
    root = state.root.signed
    roles = {}
    for role in ROLES:
        held = {signer.public_key.keyid for signer in keys.online(files.keys, role)}
        signed = getattr(state, role).signed
        roles[role] = {
            "version": signed.version,
            "expires": signed.expires.isoformat(),
            "threshold": root.roles[role].threshold,
            "keys": [{"keyid": keyid, "online": keyid in held} for keyid in root.roles[role].keyids],
        }
    staged = staged_targets(files)
    answer: dict[str, Any] = {"roles": roles, "staged": None}
    if staged is not None:
        waiting = _waiting(root, staged)
        answer["staged"] = {
            "file": str(files.staged),
            "version": waiting.version,
            "signed": waiting.signed,
            "threshold": waiting.threshold,
            "targets": sorted(staged.signed.targets),
        }
    answer["targets"] = sorted(state.targets.signed.targets)
    return answer


def load_state(files: TrustFiles) -> State:
    if not files.initialised():
        raise TrustError(
            "the update trust is not initialised: run `mahavishnu artifact trust init` (or `mahavishnu up`)"
        )
    loaded: dict[str, Any] = {}
    names = {}
    for role in ROLES:
        newest = files.newest(role)
        if newest is None:
            raise TrustError(f"{files.repository} has no {role} metadata: restore the trust/ folder from a backup")
        names[role], data = newest
        loaded[role] = Metadata[Any].from_bytes(data)
    return State(names=names, **loaded)


def staged_targets(files: TrustFiles) -> Metadata[Targets] | None:
    data = files.read_staged()
    return None if data is None else Metadata[Targets].from_bytes(data)


def _waiting(root: Root, staged: Metadata[Targets]) -> Waiting:
    result = metadata.verification(root, staged)
    return Waiting(staged.signed.version, len(result.signed), result.threshold)


def sign_online(files: TrustFiles, root: Root, signed: Metadata[Any], role: str) -> VerificationResult:
    wanted = set(root.roles[role].keyids)
    for signer in keys.online(files.keys, role):
        if signer.public_key.keyid in wanted:
            signed.sign(signer, append=True)
    return metadata.verification(root, signed)


def commit_targets(files: TrustFiles, state: State, targets: Metadata[Targets], now: datetime) -> None:
    data = metadata.to_bytes(targets)
    name = metadata.file_name(TARGETS, targets.signed.version)
    files.write(name, data, replaces=state.names.get(TARGETS))
    state.targets, state.names[TARGETS] = targets, name
    commit_snapshot(files, state, data, now)


def commit_snapshot(files: TrustFiles, state: State, targets: bytes, now: datetime) -> None:
    current = state.snapshot.signed if state.snapshot is not None else None
    snapshot = metadata.next_snapshot(current, targets, state.targets.signed.version, now)
    _require(sign_online(files, state.root.signed, snapshot, SNAPSHOT), SNAPSHOT, files)
    data = metadata.to_bytes(snapshot)
    name = metadata.file_name(SNAPSHOT, snapshot.signed.version)
    files.write(name, data, replaces=state.names.get(SNAPSHOT))
    state.snapshot, state.names[SNAPSHOT] = snapshot, name
    _commit_timestamp(files, state, data, snapshot.signed.version, now)


def _commit_timestamp(files: TrustFiles, state: State, snapshot: bytes, version: int, now: datetime) -> None:
    current = state.timestamp.signed if state.timestamp is not None else None
    timestamp = metadata.next_timestamp(current, snapshot, version, now)
    _require(sign_online(files, state.root.signed, timestamp, TIMESTAMP), TIMESTAMP, files)
    files.write(metadata.file_name(TIMESTAMP, timestamp.signed.version), metadata.to_bytes(timestamp))
    state.timestamp, state.names[TIMESTAMP] = timestamp, metadata.file_name(TIMESTAMP, timestamp.signed.version)


def _require(result: VerificationResult, role: str, files: TrustFiles) -> None:
    if not result.verified:
        raise TrustError(
            f"the mesh holds {len(result.signed)} of the {result.threshold} {role} keys it needs online "
            f"(in {files.keys / role}): restore them from a backup of trust/keys"
        )


def signature_document(path: Path) -> Signature:
    """The signature in the file `artifact sign --out` wrote; TrustError naming the file otherwise."""
    try:
        document = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise TrustError(f"cannot read the signature file {path}: {exc}") from None
    return read_signature(document, str(path))
