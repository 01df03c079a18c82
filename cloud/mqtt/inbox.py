"""The bridge's durable inbox: MQTT messages become numbered events on disk before PUBACK.

Why its own file and not :mod:`gateway.outbox`: exactly-once needs the event *and* the note
"MQTT packet ``mid`` with this digest is done" in one transaction, and the gateway outbox
stamps samples itself and has no room for that note. Event bodies use the gateway outbox's
encoding (:func:`gateway.outbox.encode_event_body`).

How a message maps to a seq, exactly once at QoS 1 (MQTT 5.0 §4.3.2, §4.4):

1. :meth:`Inbox.append` assigns the next seq, stores the event, and records ``(mid, digest)``
   in ``recent`` in one fsync'd transaction; only then does the bridge send PUBACK.
2. If the bridge dies before PUBACK, the broker resends the message with DUP=1 in the resumed
   session. :meth:`Inbox.seen` finds the same ``(mid, digest)`` and the bridge just acks it.
   A packet id is reused only after its PUBACK, so ``recent`` keeps one row per id (at most
   65535) and a fresh message (DUP=0) is never taken for a resend.
3. The link then moves events to the core like a gateway's outbox (the core deduplicates by
   module id and seq); :meth:`Inbox.ack` removes what the core has stored.

Synchronous and single-threaded (the bridge calls it through ``asyncio.to_thread``, one call
at a time). Held with an exclusive lock: a second bridge for the same tenant fails to open it.
"""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING

from cloud.mqtt.errors import MqttError
from gateway.errors import OutboxError
from gateway.outbox import decode_event_body, encode_event_body

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from protocol.events import Event

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS events (seq INTEGER PRIMARY KEY, body BLOB NOT NULL)",
    "CREATE TABLE IF NOT EXISTS recent (mid INTEGER PRIMARY KEY, digest BLOB NOT NULL)",
    "INSERT OR IGNORE INTO meta VALUES ('next_seq', 1)",
)


class Inbox:
    """See the module docstring. Raises MqttError if the file cannot be opened or is held."""

    def __init__(self, path: Path) -> None:
        try:
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA locking_mode=EXCLUSIVE")
            self._db.execute("PRAGMA journal_mode=WAL")
            # FULL: fsync at each commit, before PUBACK (sqlite.org/pragma.html, synchronous)
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("BEGIN IMMEDIATE")  # takes the exclusive lock now
            for statement in _SCHEMA:
                self._db.execute(statement)
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            raise MqttError(f"cannot open the bridge inbox {path}: {exc}") from None

    def close(self) -> None:
        self._db.close()

    def seen(self, mid: int, digest: bytes) -> bool:
        """Whether the message with packet id ``mid`` and ``digest`` is already stored."""
        row = self._db.execute("SELECT digest FROM recent WHERE mid = ?", (mid,)).fetchone()
        return row is not None and row[0] == digest

    def append(self, build: Callable[[int], Event], mid: int, digest: bytes) -> Event:
        """Store ``build(next seq)`` and note ``(mid, digest)``, atomically.

        ``build`` may raise (a refused payload): then nothing is stored and no seq is used.
        """
        self._db.execute("BEGIN IMMEDIATE")
        try:
            seq = self._next_seq()
            event = build(seq)
            self._db.execute("INSERT INTO events VALUES (?, ?)", (seq, encode_event_body(event)))
            self._db.execute("UPDATE meta SET value = ? WHERE key = 'next_seq'", (seq + 1,))
            self._db.execute("INSERT OR REPLACE INTO recent VALUES (?, ?)", (mid, digest))
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")
        return event

    def read_after(self, seq: int, limit: int) -> list[Event]:
        rows = self._db.execute(
            "SELECT seq, body FROM events WHERE seq > ? ORDER BY seq LIMIT ?", (seq, limit)
        ).fetchall()
        try:
            return [decode_event_body(s, body) for s, body in rows]
        except OutboxError as exc:
            raise MqttError(str(exc)) from None

    def ack(self, upto_seq: int) -> None:
        self._db.execute("DELETE FROM events WHERE seq <= ?", (upto_seq,))

    def resume_from(self) -> int:
        """The oldest stored seq, or the next seq if none is stored (a link ``Hello``)."""
        low = self._db.execute("SELECT MIN(seq) FROM events").fetchone()[0]
        return int(low) if low is not None else self._next_seq()

    def depth(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM events").fetchone()[0])

    def _next_seq(self) -> int:
        return int(self._db.execute("SELECT value FROM meta WHERE key = 'next_seq'").fetchone()[0])
