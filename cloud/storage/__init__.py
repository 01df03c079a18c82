"""Event storage for the cloud core: the :class:`EventStore` interface and its SQLite default.

Callers (the link server, the REST API) depend on :class:`EventStore` only; the SQLite store
is opened with :func:`open_sqlite_store`. See :mod:`cloud.storage.base` for the contract and
:mod:`cloud.storage.errors` for the error tree.
"""

from __future__ import annotations

from cloud.storage.base import EventPage, EventStore, StoredEvent, StoreResult
from cloud.storage.errors import (
    InvalidCursor,
    InvalidEvent,
    InvalidQuery,
    SchemaError,
    StorageBroken,
    StorageClosed,
    StorageError,
)
from cloud.storage.sqlite import SqliteEventStore, StoreStatistics, open_sqlite_store

__all__ = [
    "EventPage",
    "EventStore",
    "InvalidCursor",
    "InvalidEvent",
    "InvalidQuery",
    "SchemaError",
    "SqliteEventStore",
    "StorageBroken",
    "StorageClosed",
    "StorageError",
    "StoreResult",
    "StoreStatistics",
    "StoredEvent",
    "open_sqlite_store",
]
