"""The buckets of software updates, made with the streams at `up` and replicated like them.

The artifacts' object store and the TUF metadata's key-value bucket (core.updates.naming)
are JetStream streams of nats-py's making (its object store and KV layouts), so they are
created through its API rather than as a StreamSpec of ours: the layout stays the one every
NATS client, the `nats` CLI included, reads.
"""

from __future__ import annotations

from nats.js import JetStreamContext, api
from nats.js.errors import BadRequestError

from core.updates.naming import ARTIFACTS_BUCKET, ARTIFACTS_STREAM, METADATA_BUCKET, METADATA_STREAM

STREAM_NAME_IN_USE = 10058  # JetStream's error code for a stream that exists with another config


async def ensure_update_buckets(js: JetStreamContext, *, replicas: int) -> None:
    """Create both buckets, or bring an existing one to `replicas`; idempotent."""
    artifacts = api.ObjectStoreConfig(
        bucket=ARTIFACTS_BUCKET,
        description="Software artifacts' bytes (mahavishnu artifact add)",
        storage=api.StorageType.FILE,
        replicas=replicas,
    )
    metadata = api.KeyValueConfig(
        bucket=METADATA_BUCKET,
        description="Signed TUF metadata of the artifacts (root, targets, snapshot, timestamp)",
        storage=api.StorageType.FILE,
        replicas=replicas,
        history=1,  # every version of a role's file has a key of its own ("2.root.json")
        direct=True,  # devices read it by Direct Get only (nats-py leaves it off for a KV bucket)
    )
    try:
        await js.create_object_store(ARTIFACTS_BUCKET, config=artifacts)
    except BadRequestError as exc:
        if exc.err_code != STREAM_NAME_IN_USE:
            raise
        await _set_replicas(js, ARTIFACTS_STREAM, replicas)
    try:
        await js.create_key_value(metadata)
    except BadRequestError as exc:
        if exc.err_code != STREAM_NAME_IN_USE:
            raise
        await _set_replicas(js, METADATA_STREAM, replicas)


async def _set_replicas(js: JetStreamContext, stream: str, replicas: int) -> None:
    info = await js.stream_info(stream)
    if info.config.num_replicas != replicas or not info.config.allow_direct:
        await js.update_stream(info.config.evolve(num_replicas=replicas, allow_direct=True))
