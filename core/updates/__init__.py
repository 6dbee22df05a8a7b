"""Software updates, the shared part: where artifacts and their signed metadata live, and their names (pure).

An artifact's bytes live in a JetStream object store bucket (ARTIFACTS_BUCKET), its signed
TUF metadata in a key-value bucket (METADATA_BUCKET); both are replicated like the streams.
Every change to either is also an event on EVENTS (core.events.update), which stays the
source of truth for what was added, signed and removed, and when.
"""
