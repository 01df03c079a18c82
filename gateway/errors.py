"""Errors raised by the gateway application.

::

    GatewayError
    ├── ConfigError (ValueError)   the configuration file is missing, unreadable or invalid;
    │                              names the file, the key, what is wrong and what to do
    └── OutboxError                the durable outbox cannot do what was asked (closed, held by
        │                          another process, a corrupt row, an ack beyond the last seq)
        └── OutboxFull             nothing could be stored: the disk is full, or one batch is
                                   larger than the whole outbox

Errors from SQLite, the file system and ``tomllib`` are translated at the boundary and kept as
``__cause__``; callers catch only these classes. This module defines classes and nothing else.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path


class GatewayError(Exception):
    """Root of every error the gateway raises on purpose."""


class ConfigError(GatewayError, ValueError):
    """The gateway's configuration is wrong; the message says where and how to fix it.

    Attributes:
        path: the configuration file (or the file it refers to) that is at fault.
        key: the dotted key at fault (``"uplink.url"``), or ``""`` for the file as a whole.
        problem: what is wrong, in one sentence.
        hint: what the operator should do about it.
    """

    def __init__(self, path: Path, key: str, problem: str, hint: str) -> None:
        where = f"{path}: {key}: " if key else f"{path}: "
        super().__init__(f"{where}{problem} ({hint})")
        self.path = path
        self.key = key
        self.problem = problem
        self.hint = hint


class OutboxError(GatewayError):
    """The outbox refused an operation; the outbox's stored events are unchanged."""


class OutboxFull(OutboxError):
    """Nothing from the call was stored: the disk is full or the batch exceeds ``max_events``.

    A full *outbox* is not an error: the oldest events make room and are counted in the loss
    ledger. This is raised only when making room is impossible.
    """
