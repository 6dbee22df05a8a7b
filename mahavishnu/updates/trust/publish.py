"""Publishing: the signed files of trust/repository into the tuf bucket, each with its TrustMetadataPublished.

Root first, timestamp last: a device that reads the bucket while a publish is under way
finds either the old timestamp (and the files it names, all still there: versioned names
are never overwritten) or the new one, whose snapshot and targets are already stored.
"""

from __future__ import annotations

import nats.errors
import nats.js.errors
from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError
from tuf.api.metadata import Metadata

from core.events import TrustMetadataPublished
from core.store import EventStore
from core.store.nats_errors import from_exception
from core.updates.naming import METADATA_BUCKET
from mahavishnu.updates.trust.local import TIMESTAMP_FILE, TrustFiles
from mahavishnu.updates.trust.policy import TrustError


def _order(files: TrustFiles) -> list[str]:
    names = [f"{version}.root.json" for version in files.versions("root")]
    for role in ("targets", "snapshot", "timestamp"):
        newest = files.newest(role)
        if newest is not None:
            names.append(newest[0])
    return names


async def publish(
    files: TrustFiles, js: JetStreamContext, store: EventStore, *, actor: str
) -> list[TrustMetadataPublished]:
    """Store every signed file the bucket does not hold yet (or holds another timestamp.json of); their events.

    Idempotent: a file already stored as it is is skipped, so `up` calls it at every start
    (a mesh whose trust was initialised before it ran, or whose bucket was lost, catches up).
    TrustError when the bucket holds another file under a versioned name: another mesh's
    metadata, which this one must not overwrite.
    """
    try:
        kv = await js.key_value(METADATA_BUCKET)
    except nats.js.errors.BucketNotFoundError:
        raise TrustError(f"no {METADATA_BUCKET} bucket: `mahavishnu up` makes it") from None
    except (TimeoutError, nats.errors.Error) as exc:
        raise from_exception(exc, doing=f"open the {METADATA_BUCKET} bucket") from None
    published = []
    for name in _order(files):
        data = (files.repository / name).read_bytes()
        try:
            stored = (await kv.get(name)).value
        except KeyNotFoundError:  # also a deleted key (KeyDeletedError is one)
            stored = None
        except (TimeoutError, nats.errors.Error) as exc:
            raise from_exception(exc, doing=f"read {name} in the {METADATA_BUCKET} bucket") from None
        if stored == data:
            continue
        if stored is not None and name != TIMESTAMP_FILE:
            raise TrustError(
                f"the tuf bucket holds another {name} than {files.repository}: it was signed by another mesh's keys; "
                "restore this mesh's trust/ folder or purge the bucket"
            )
        try:
            await kv.put(name, data)
        except (TimeoutError, nats.errors.Error) as exc:
            raise from_exception(exc, doing=f"store {name} in the {METADATA_BUCKET} bucket", appending=True) from None
        signed = Metadata.from_bytes(data)
        event = TrustMetadataPublished(
            role=signed.signed.type,
            version=signed.signed.version,
            expires=signed.signed.expires,
            signers=tuple(sorted(signed.signatures)),
            actor=actor,
        )
        await store.append(event)
        published.append(event)
    return published
