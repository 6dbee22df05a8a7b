"""The names of software updates, in one place (pure): buckets, target paths, a device's download consumer."""

from __future__ import annotations

import re

from core import subjects

# The object store bucket holding artifacts' bytes; JetStream names its stream OBJ_<bucket>.
ARTIFACTS_BUCKET = "artifacts"
ARTIFACTS_STREAM = f"OBJ_{ARTIFACTS_BUCKET}"
# The key-value bucket holding the TUF metadata (root, targets, snapshot, timestamp), one
# key per file as the TUF specification names them ("1.root.json", "timestamp.json", ...).
METADATA_BUCKET = "tuf"
METADATA_STREAM = f"KV_{METADATA_BUCKET}"
# Both buckets' streams: sources of truth beside the mesh's own streams (a backup carries them).
BUCKET_STREAMS = (ARTIFACTS_STREAM, METADATA_STREAM)
# A device's trusted metadata lives in this folder beside its agent.toml; enrolment and
# provisioning put the mesh's root.json there, and the verifier keeps what it trusts since.
TRUSTED_DIR = "trust"
TRUSTED_ROOT = f"{TRUSTED_DIR}/root.json"

# An artifact's name and version: what operators type (`--update NAME@VERSION`), and TUF
# target paths are built from them, so they stay plain.
_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
_VERSION = re.compile(r"[0-9A-Za-z][0-9A-Za-z.+_-]{0,63}")
_DEVICE_TYPE = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")


def artifact_name(value: str) -> str:
    """`value` if it can name an artifact; ValueError saying what to use otherwise."""
    if not _NAME.fullmatch(value):
        raise ValueError(f"artifact name {value!r}: use 1-64 lower-case letters, digits, _ or -, starting alphanumeric")
    return value


def artifact_version(value: str) -> str:
    if not _VERSION.fullmatch(value):
        raise ValueError(f"artifact version {value!r}: use 1-64 letters, digits, '.', '+', '_' or '-' (e.g. 1.4.2)")
    return value


def device_type(value: str) -> str:
    if not _DEVICE_TYPE.fullmatch(value):
        raise ValueError(f"device type {value!r}: use 1-64 lower-case letters, digits, _ or -")
    return value


def target_path(name: str, version: str) -> str:
    """The artifact's TUF target path, which is also its object's name in ARTIFACTS_BUCKET."""
    return f"{artifact_name(name)}/{artifact_version(version)}"


def download_consumer(device_id: str) -> str:
    """The one consumer on ARTIFACTS_STREAM a device may create to read an artifact's chunks."""
    return f"ota-{subjects.token(device_id, what='device id')}"
