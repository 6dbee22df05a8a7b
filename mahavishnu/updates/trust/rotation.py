"""Root rotation: a new version of root that replaces one role's keys (and threshold), signed as TUF requires.

A device accepts root N+1 only when it carries the signatures of a threshold of root N's
root keys and of its own (specification 5.3.4), so the new root is signed by the root keys
at hand: those under the home (online) and the files given (`--root-key`, offline), and,
when root's own keys are the ones replaced, by the new ones made here. The files the
replaced role signs are re-signed at once with its new keys (made here, so at hand even
when they are then written to an offline folder): a new targets (the staged one, if any),
or a new snapshot and timestamp. Revoked keys left under the home are deleted.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from nats.js import JetStreamContext
from tuf.api.metadata import Metadata, Root, Targets

from core.store import EventStore
from mahavishnu.runtime.home import Home
from mahavishnu.updates.trust import keys, metadata
from mahavishnu.updates.trust.control import (
    AUDIT,
    Outcome,
    commit_snapshot,
    commit_targets,
    load_state,
    staged_targets,
    trust_files,
)
from mahavishnu.updates.trust.policy import OFFLINE_CAPABLE, ROLES, ROOT, TARGETS, RoleKeys, TrustError, expires
from mahavishnu.updates.trust.publish import publish


async def rotate(
    home: Home,
    js: JetStreamContext,
    store: EventStore,
    *,
    role: str,
    plan: RoleKeys,
    root_keys: Sequence[Path] = (),
    offline_dir: Path | None = None,
    actor: str,
    now: datetime | None = None,
) -> Outcome:
    """Publish root N+1 with `role`'s keys replaced by `plan.count` new ones, `plan.threshold` of which must sign.

    With `offline_dir` (root or targets only) the new private keys are written there, else
    under the home. TrustError when the root keys at hand are fewer than root N's threshold.
    """
    if role not in ROLES:
        raise TrustError(f"unknown role {role!r}: rotate one of {', '.join(ROLES)}")
    if offline_dir is not None and role not in OFFLINE_CAPABLE:
        raise TrustError(f"{role} keys are the mesh's own to use: only root and targets keys can be offline")
    now = now or datetime.now(UTC)
    files = trust_files(home)
    async with files.locked():
        state = load_state(files)
        old = state.root.signed
        new = Root.from_dict(copy.deepcopy(old.to_dict()))  # to_dict shares its lists with `old`
        new.version, new.expires = old.version + 1, expires(ROOT, now)
        for keyid in list(new.roles[role].keyids):
            new.revoke_key(keyid, role)
        made = [keys.generate() for _ in range(plan.count)]
        for signer in made:
            new.add_key(signer.public_key, role)
        new.roles[role].threshold = plan.threshold
        rotated = Metadata(new)
        at_hand = [*keys.online(files.keys, ROOT), *(keys.load(path) for path in root_keys)]
        for signer in at_hand + (made if role == ROOT else []):
            if signer.public_key.keyid in {*old.roles[ROOT].keyids, *new.roles[ROOT].keyids}:
                rotated.sign(signer, append=True)
        by_old = old.get_verification_result(ROOT, rotated.signed_bytes, rotated.signatures)
        if not by_old.verified:
            raise TrustError(
                f"root v{new.version} needs {by_old.threshold} of root v{old.version}'s keys, {len(by_old.signed)} "
                "at hand: give the offline ones with --root-key FILE (repeatable)"
            )
        folder = offline_dir if offline_dir is not None else files.keys
        for signer in made:
            keys.save(signer, folder, role)
        for path in (files.keys / role).glob("*.key"):  # the revoked keys kept here sign nothing more
            if path.stem not in new.roles[role].keyids:
                path.unlink()
        files.write(metadata.file_name(ROOT, new.version), metadata.to_bytes(rotated))
        state.root = rotated
        if role == TARGETS:
            staged = staged_targets(files)
            base = (staged if staged is not None else state.targets).signed
            renewed = metadata.next_targets(
                Targets(version=state.targets.signed.version, targets=dict(base.targets)), now
            )
            for signer in made:
                renewed.sign(signer, append=True)
            commit_targets(files, state, renewed, now)
            files.drop_staged()
        elif role != ROOT:  # snapshot or timestamp: their new online keys sign new files now
            commit_snapshot(files, state, (files.repository / state.names[TARGETS]).read_bytes(), now)
    await store.audit.record(
        actor=actor,
        category=AUDIT,
        action="trust.rotate",
        target=role,
        details={"root_version": new.version, "keys": sorted(new.roles[role].keyids), "threshold": plan.threshold},
    )
    return Outcome(published=tuple(await publish(files, js, store, actor=actor)))
