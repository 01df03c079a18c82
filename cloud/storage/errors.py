"""Errors raised by the event store.

::

    CloudError
    └── StorageError              root of everything the store raises on purpose
        ├── InvalidCursor         (also ValueError) a page cursor that is malformed, was
        │                         tampered with, or belongs to another query
        ├── InvalidQuery          (also ValueError) a query argument out of range (e.g. limit)
        ├── InvalidEvent          (also ValueError) an event that cannot be stored as given
        │                         (a number outside a 64-bit column, text that is not UTF-8)
        ├── SchemaError           the database's schema is newer than this code, or damaged
        ├── StorageClosed         the store was closed by this process (Trio: *Closed*)
        └── StorageBroken         the database engine failed (disk full, I/O error,
                                  corruption); ``__cause__`` holds the engine's exception

Following Trio's naming, *Closed* means local code closed the store and *Broken* means the
engine or the disk broke it. Foreign exceptions (``sqlite3.Error``, ``cbor2`` decode errors,
``binascii.Error``) never leave the storage package: the store translates them at its
boundary into one of the classes above.

This module defines types only; it does no I/O.
"""

from __future__ import annotations

from cloud.errors import CloudError


class StorageError(CloudError):
    """Root of every error the event store raises on purpose."""


class InvalidCursor(StorageError, ValueError):
    """A page cursor could not be used.

    Attributes:
        reason: why (for logs; a client is only told the cursor is invalid).
    """

    def __init__(self, reason: str) -> None:
        super().__init__(f"invalid cursor: {reason}")
        self.reason = reason


class InvalidQuery(StorageError, ValueError):
    """A query argument is out of its allowed range."""


class InvalidEvent(StorageError, ValueError):
    """An event cannot be stored exactly as given.

    Attributes:
        seq: the offending event's sequence number.
        reason: what is wrong with it.
    """

    def __init__(self, seq: int, reason: str) -> None:
        super().__init__(f"event seq={seq}: {reason}")
        self.seq = seq
        self.reason = reason


class SchemaError(StorageError):
    """The database schema cannot be used by this version of the code."""


class StorageClosed(StorageError):
    """The store was closed by this process; no further calls are accepted."""


class StorageBroken(StorageError):
    """The database engine failed; the operation's outcome is in ``__cause__``.

    A ``store_batch`` that raises this has *not* been acknowledged: the batch may or may not
    be on disk, and the sender must resend it (deduplication makes that safe).
    """
