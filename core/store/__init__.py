"""The event store over JetStream, and how to connect to it."""

from core.store.connection import Identity, connect, tls_context
from core.store.records import Appended, BulkReport, StoredEvent
from core.store.replay import RawMessage
from core.store.store import EventStore

__all__ = ["Appended", "BulkReport", "EventStore", "Identity", "RawMessage", "StoredEvent", "connect", "tls_context"]
