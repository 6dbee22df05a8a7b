"""The event store over JetStream, and how to connect to it.

Each name loads its module when first asked for (PEP 562): a device's agent needs
`connect` (core.store.connection) and not the store, its replay and its batches, which
cost it memory and start-up time (bench/agent_footprint.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from core.lazy import lazy_names

if TYPE_CHECKING:
    from core.store.connection import Identity, connect, tls_context
    from core.store.records import Appended, BulkReport, StoredEvent
    from core.store.replay import RawMessage
    from core.store.store import EventStore

__all__ = ["Appended", "BulkReport", "EventStore", "Identity", "RawMessage", "StoredEvent", "connect", "tls_context"]

_MODULE_OF = {
    "Identity": "core.store.connection",
    "connect": "core.store.connection",
    "tls_context": "core.store.connection",
    "Appended": "core.store.records",
    "BulkReport": "core.store.records",
    "StoredEvent": "core.store.records",
    "RawMessage": "core.store.replay",
    "EventStore": "core.store.store",
}


__getattr__ = lazy_names(__name__, _MODULE_OF)
