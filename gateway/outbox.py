"""The durable outbox: every event is on disk before anything else happens to it.

Principle 2 of the brief, "nothing is lost, nothing is doubled": a sample becomes an event by
being appended here, and an event leaves only when the core has acknowledged it as stored
(:meth:`Outbox.ack`) or when the outbox is full and it is the oldest, in which case the drop is
counted in a persistent loss ledger (:meth:`Outbox.losses`), never silent.

Storage is one SQLite file in WAL mode with ``synchronous=FULL``. With ``synchronous=NORMAL``
a WAL-mode commit is only written, not fsync'd, until the next checkpoint, so a power cut can
undo transactions that already returned (sqlite.org/pragma.html#pragma_synchronous). ``FULL``
fsyncs the WAL at every commit: once :meth:`Outbox.append` returns, its events survive power
loss, which is what "acknowledged as written" means. The cost is one fsync per call, which is
why ``append`` takes a batch.

Each event is stored as the bytes the link sends (:func:`protocol.preencoded.encode_event_fields`:
every field after the seq, checked and canonically encoded once, at append), so sending a
batch splices stored bytes (:func:`protocol.preencoded.encode_batch_of_encoded`) instead of
decoding and re-encoding each event. A sample the link protocol would refuse (a non-finite
number, an over-long name) is never stored: it is counted in the loss ledger under
``invalid_event``, because stored it would block the link at every retry.

Invariants:

* Sequence numbers start at 1, strictly increase and are never reused: the next one is kept in
  the ``meta`` table and advanced in the same transaction that inserts the events, so neither a
  crash, nor acking everything, nor reopening the file can hand one out twice.
* Events only leave from the oldest end (acks are cumulative, drops take the oldest), so the
  stored seqs are always one contiguous run ending at the last seq issued.
* The file is opened with an exclusive lock: a second process (a second gateway started by
  mistake) gets :class:`~gateway.errors.OutboxError` instead of sending the same events twice.

:class:`Outbox` is synchronous and not thread-safe; :func:`open_outbox` wraps it for Trio and
runs every call in one worker thread at a time. Neither decides *when* to send or retry: that
is the uplink's job.
"""

from __future__ import annotations

import itertools
import logging
import sqlite3
from collections import deque
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final, NamedTuple, ParamSpec, TypeVar

import cbor2
import trio

from gateway.errors import OutboxError, OutboxFull
from protocol.errors import ProtocolError
from protocol.events import ClockSource, Event, Reading
from protocol.preencoded import decode_encoded_event, encode_event_fields

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Sequence

    from drivers.base import Sample
    from gateway.clock import EventFields, Stamper

log = logging.getLogger(__name__)

_P = ParamSpec("_P")
_T = TypeVar("_T")

#: Default bound on stored events; about 100 MB at typical event sizes.
DEFAULT_MAX_EVENTS: Final = 1_000_000
#: Appended events not yet read by the uplink that :class:`AsyncOutbox` also keeps in memory.
TAIL_CACHE_EVENTS: Final = 10_000
#: Most events :meth:`AsyncOutbox.append` stores in one transaction (one worker-thread call).
APPEND_CHUNK_EVENTS: Final = 500
#: Loss-ledger reason for events dropped because the outbox was full.
LOSS_OUTBOX_FULL: Final = "outbox_full"
#: Loss-ledger reason for samples the link protocol refuses (never stored, never sent).
LOSS_INVALID_EVENT: Final = "invalid_event"
#: Loss-ledger reason for version-1 rows that cannot be decoded, dropped at the upgrade.
LOSS_CORRUPT_EVENT: Final = "corrupt_event"

#: Version 1 stored a private CBOR array per event; version 2 stores the link's bytes.
_SCHEMA_VERSION: Final = 2
#: SQLite page cache of the outbox connection, KiB.
_CACHE_KIB: Final = 1024
#: Rows re-encoded per statement when a version-1 file is upgraded.
_MIGRATE_CHUNK: Final = 5_000
# SQLite result code for "database or disk is full" (sqlite.org/rescode.html#full).
_SQLITE_FULL: Final = 13

_SCHEMA: Final = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS events (seq INTEGER PRIMARY KEY, body BLOB NOT NULL)",
    "CREATE TABLE IF NOT EXISTS losses (reason TEXT PRIMARY KEY, count INTEGER NOT NULL)"
    " WITHOUT ROWID",
)
# next_seq: the seq the next append gets; acked_upto: highest seq ever acknowledged;
# appended / acked: lifetime counters for statistics().
_META_DEFAULTS: Final = {"next_seq": 1, "acked_upto": 0, "appended": 0, "acked": 0}


@dataclass(frozen=True, slots=True)
class OutboxStatistics:
    """A snapshot of the outbox for the health report.

    Attributes:
        depth: events stored and not yet acknowledged.
        bytes_on_disk: size of the database file plus its WAL.
        appended: events ever appended (over the file's whole life).
        acked: events ever removed by an acknowledgement.
        dropped: events ever dropped on purpose (the sum of the loss ledger).
        next_seq: the seq the next appended event will get.
    """

    depth: int
    bytes_on_disk: int
    appended: int
    acked: int
    dropped: int
    next_seq: int


class StoredEvent(NamedTuple):
    """An event as the outbox holds it: its seq and the link's encoding of the rest."""

    seq: int
    body: bytes

    def event(self) -> Event:
        """Decode the event (see :func:`decode_stored_body`)."""
        return decode_stored_body(self.seq, self.body)


def encode_stored_body(event: Event) -> bytes:
    """Encode everything but ``seq`` (the row key) as the link protocol does.

    Raises:
        ProtocolError: the link protocol refuses the event (its codec's message says why).
    """
    return encode_event_fields(
        event.device, event.boot_id, event.mono_ns, event.wall_ns, event.clock, event.readings
    )


def decode_stored_body(seq: int, body: bytes) -> Event:
    """Rebuild the event stored under ``seq``, with the link decoder's checks.

    Raises:
        OutboxError: the row is not what :func:`encode_stored_body` writes (a corrupt file).
    """
    try:
        return decode_encoded_event(seq, body)
    except ProtocolError as exc:
        raise OutboxError(f"stored event {seq} is corrupt: {exc}") from exc


def encode_event_body(event: Event) -> bytes:
    """Encode everything but ``seq`` as a compact CBOR array: the version-1 outbox row.

    The outbox no longer writes it; the MQTT bridge's inbox (``cloud.mqtt.inbox``) still
    does, and the outbox reads it to upgrade a version-1 file.
    """
    readings = [[r.name, r.unit, r.value] for r in event.readings]
    return cbor2.dumps(
        [event.device, event.boot_id, event.mono_ns, event.wall_ns, int(event.clock), readings]
    )


def decode_event_body(seq: int, body: bytes) -> Event:
    """Rebuild the event :func:`encode_event_body` encoded under ``seq``.

    Raises:
        OutboxError: the row is not what :func:`encode_event_body` writes (a corrupt file).
    """
    try:
        device, boot_id, mono_ns, wall_ns, clock, readings = cbor2.loads(body)
        event = Event(
            seq=seq,
            device=device,
            boot_id=boot_id,
            mono_ns=mono_ns,
            wall_ns=wall_ns,
            clock=ClockSource(clock),
            readings=tuple(Reading(name, unit, value) for name, unit, value in readings),
        )
    except (cbor2.CBORDecodeError, ValueError, TypeError) as exc:
        raise OutboxError(f"stored event {seq} is corrupt: {exc}") from exc
    _check_types(event)
    return event


def _check_types(event: Event) -> None:
    ok = (
        isinstance(event.device, str)
        and isinstance(event.boot_id, bytes)
        and isinstance(event.mono_ns, int)
        and isinstance(event.wall_ns, int)
        and all(_reading_ok(r) for r in event.readings)
    )
    if not ok:
        raise OutboxError(f"stored event {event.seq} is corrupt: a field has the wrong type")


def _reading_ok(reading: Reading) -> bool:
    return (
        isinstance(reading.name, str)
        and isinstance(reading.unit, str)
        and isinstance(reading.value, int | float | str | bytes)
    )


class Outbox:
    """The synchronous outbox over one SQLite file (see the module docstring).

    Args:
        path: the database file; created with its tables if missing.
        stamper: turns samples into events at :meth:`append`.
        max_events: most events kept; beyond it the oldest are dropped and counted.

    Raises:
        OutboxError: the file cannot be opened, is held by another process, or is not an
            outbox of a known schema version.
    """

    def __init__(
        self, path: Path | str, stamper: Stamper, *, max_events: int = DEFAULT_MAX_EVENTS
    ) -> None:
        if max_events < 1:
            raise ValueError(f"max_events must be at least 1, got {max_events}")
        self.path = Path(path)
        self.max_events = max_events
        #: Every seq up to this one has been dropped as ``outbox_full`` (0: none yet); the
        #: Trio wrapper drops them from its memory tail too.
        self.overflowed_upto = 0
        self._stamper = stamper
        # Copies of meta's next_seq - 1 and acked_upto, updated only after a commit: this
        # connection is the file's only writer (the exclusive lock), so they are exact, and
        # has_events_after() needs no query (the Trio wrapper calls it from the event loop).
        self._last_seq = 0
        self._acked_upto = 0
        try:
            # check_same_thread=False: Trio's worker threads are pooled, so successive calls
            # may come from different threads; AsyncOutbox serialises them with a limiter.
            self._db: sqlite3.Connection | None = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=0
            )
        except sqlite3.Error as exc:
            raise OutboxError(f"cannot open outbox {self.path}: {exc}") from exc
        try:
            self._setup()
        except BaseException:
            self.close()
            raise

    def _setup(self) -> None:
        with self._errors("open"):
            db = self._conn()
            # EXCLUSIVE before WAL: SQLite then keeps the WAL index in heap memory instead of a
            # shared -shm file and holds the lock until close (sqlite.org/wal.html §8).
            db.execute("PRAGMA locking_mode=EXCLUSIVE")
            mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if mode != "wal":
                raise OutboxError(f"outbox {self.path}: journal mode is {mode!r}, not 'wal'")
            db.execute("PRAGMA synchronous=FULL")
            # 1 MiB of page cache instead of SQLite's 2 MiB default: appends and drains walk
            # the table in order, so a smaller cache costs no measurable CPU and saves 0.75 MiB
            # of resident memory through an outage (docs/performance.md, gateway memory).
            db.execute(f"PRAGMA cache_size={-_CACHE_KIB}")
            with self._transaction():
                self._create_schema(db)
            self._last_seq = self._meta(db, "next_seq") - 1
            self._acked_upto = self._meta(db, "acked_upto")

    def _create_schema(self, db: sqlite3.Connection) -> None:
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version not in (0, 1, _SCHEMA_VERSION):
            raise OutboxError(
                f"outbox {self.path} has schema version {version}; this gateway reads "
                f"version {_SCHEMA_VERSION}: move the file aside or upgrade the gateway"
            )
        for statement in _SCHEMA:
            db.execute(statement)
        db.executemany(
            "INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)", _META_DEFAULTS.items()
        )
        if version == 1:
            self._upgrade_v1(db)
        db.execute(f"PRAGMA user_version={_SCHEMA_VERSION}")

    def _upgrade_v1(self, db: sqlite3.Connection) -> None:
        """Re-encode a version-1 file's waiting events in place, in order.

        An event the link protocol refuses was never sent, and neither was anything after
        it: the old uplink failed to encode the batch holding it and retried it forever. It
        is dropped and counted as ``invalid_event``, and the events after it move down to
        close the gap (their seqs never left the gateway), keeping the stored seqs one run.
        A row that does not decode at all (a damaged file) could not have been sent either:
        it takes the same way out, counted as ``corrupt_event``, rather than keep the gateway
        from starting.
        """
        after, invalid, corrupt = 0, 0, 0
        while True:
            rows = db.execute(
                "SELECT seq, body FROM events WHERE seq > ? ORDER BY seq LIMIT ?",
                (after, _MIGRATE_CHUNK),
            ).fetchall()
            if not rows:
                break
            # Ascending order: each row moves down onto a seq that is already free.
            for seq, body in rows:
                try:
                    new_body = encode_stored_body(decode_event_body(seq, body))
                except ProtocolError:
                    invalid += 1
                except OutboxError as exc:
                    corrupt += 1
                    log.warning("outbox upgrade: dropped a corrupt row: %s", exc)
                else:
                    db.execute(
                        "UPDATE events SET seq = ?, body = ? WHERE seq = ?",
                        (seq - invalid - corrupt, new_body, seq),
                    )
                    continue
                db.execute("DELETE FROM events WHERE seq = ?", (seq,))
            after = rows[-1][0]
        self._add_meta(db, "next_seq", -(invalid + corrupt))
        self._count_loss(db, LOSS_INVALID_EVENT, invalid)
        self._count_loss(db, LOSS_CORRUPT_EVENT, corrupt)

    # -- public API ----------------------------------------------------------------------

    def append(self, samples: Sequence[Sample]) -> list[StoredEvent]:
        """Stamp, number, encode and durably store ``samples`` in one transaction.

        A sample the link protocol refuses is counted as ``invalid_event`` in the loss ledger
        and gets no seq; the others are stored.

        Returns:
            The stored events, in order, with consecutive new seqs.

        Raises:
            OutboxFull: the batch is larger than ``max_events`` or the disk is full; nothing
                was stored and no seq was consumed.
            OutboxError: the outbox is closed or SQLite failed; nothing was stored.
        """
        self.check_batch_size(len(samples))
        if not samples:
            return []
        # Stamped and encoded before the transaction: the write lock is held only for the
        # inserts and the commit.
        bodies, invalid = _encode_all(self._stamper.stamp_fields(samples))
        with self._errors("append"), self._transaction():
            db = self._conn()
            first = self._meta(db, "next_seq")
            stored = [StoredEvent(seq, body) for seq, body in enumerate(bodies, first)]
            db.executemany("INSERT INTO events (seq, body) VALUES (?, ?)", stored)
            self._add_meta(db, "next_seq", len(stored))
            self._add_meta(db, "appended", len(stored))
            self._count_loss(db, LOSS_INVALID_EVENT, invalid)
            self._drop_overflow(db)
        if stored:
            self._last_seq = stored[-1].seq
        return stored

    def check_batch_size(self, count: int) -> None:
        """Refuse a batch of ``count`` samples that :meth:`append` could never store whole.

        Raises:
            OutboxFull: ``count`` exceeds ``max_events``.
        """
        if count > self.max_events:
            raise OutboxFull(
                f"a batch of {count} events exceeds the outbox's max_events "
                f"({self.max_events}): append smaller batches"
            )

    def read_after(self, seq: int, limit: int) -> list[Event]:
        """Return up to ``limit`` stored events with a seq above ``seq``, oldest first."""
        return [stored.event() for stored in self.read_encoded_after(seq, limit)]

    def read_encoded_after(self, seq: int, limit: int) -> list[StoredEvent]:
        """As :meth:`read_after`, but the stored bytes, not decoded (what the uplink sends)."""
        with self._errors("read"):
            rows = self._conn().execute(
                "SELECT seq, body FROM events WHERE seq > ? ORDER BY seq LIMIT ?",
                (seq, limit),
            )
            return list(itertools.starmap(StoredEvent, rows))

    def ack(self, upto_seq: int) -> int:
        """Remove every event with a seq up to ``upto_seq`` (the core has stored them).

        Acks are cumulative; one at or below an earlier ack changes nothing.

        Returns:
            How many events were removed.

        Raises:
            OutboxError: ``upto_seq`` was never issued (the core acks what it cannot have).
        """
        with self._errors("ack"), self._transaction():
            db = self._conn()
            last_issued = self._meta(db, "next_seq") - 1
            if upto_seq > last_issued:
                raise OutboxError(
                    f"ack up to {upto_seq} is beyond the last issued seq {last_issued}"
                )
            if upto_seq <= self._meta(db, "acked_upto"):
                return 0
            removed = db.execute("DELETE FROM events WHERE seq <= ?", (upto_seq,)).rowcount
            db.execute("UPDATE meta SET value = ? WHERE key = 'acked_upto'", (upto_seq,))
            self._add_meta(db, "acked", removed)
        self._acked_upto = upto_seq
        return int(removed)

    def depth(self) -> int:
        """How many events are stored and unacknowledged."""
        with self._errors("read"):
            return self._depth(self._conn())

    def oldest(self) -> Event | None:
        """The oldest stored event, or ``None`` if the outbox is empty."""
        events = self.read_after(0, 1)
        return events[0] if events else None

    def resume_from(self) -> int:
        """The oldest stored seq, or the next seq to be issued if none is stored.

        This is what a link ``Hello`` carries: the core can then tell a gap it will never get
        (dropped or acked) from events that are merely still on their way.
        """
        with self._errors("read"):
            db = self._conn()
            low = db.execute("SELECT MIN(seq) FROM events").fetchone()[0]
            return int(low) if low is not None else self._meta(db, "next_seq")

    def renumber_above(self, floor: int) -> int:
        """Make every stored and future seq greater than ``floor``; returns how many moved.

        Needed when the core already holds seqs up to ``floor`` that this outbox never issued:
        the gateway's data directory was lost or replaced, and its seqs started again at 1.
        Reusing them would make the core drop new events as duplicates of old ones, so the
        stored events shift up past ``floor`` (keeping their order) and so does ``next_seq``.
        Nothing happens when ``floor`` is below the next seq, the normal case.
        """
        with self._errors("renumber"), self._transaction():
            db = self._conn()
            next_seq = self._meta(db, "next_seq")
            if floor < next_seq:
                return 0
            low = db.execute("SELECT MIN(seq) FROM events").fetchone()[0]
            offset = floor + 1 - (int(low) if low is not None else next_seq)
            # Two passes, so that no row ever takes a seq another row still holds.
            moved = db.execute("UPDATE events SET seq = -seq").rowcount
            db.execute("UPDATE events SET seq = ? - seq", (offset,))
            self._add_meta(db, "next_seq", offset)
            db.execute("UPDATE meta SET value = ? WHERE key = 'acked_upto'", (floor,))
        self._last_seq += offset
        self._acked_upto = floor
        return int(moved)

    def has_events_after(self, seq: int) -> bool:
        """Whether any stored event has a seq above ``seq``; answered from memory.

        Stored seqs are one run ending at the last seq issued, and neither acks nor drops
        ever take the last one (a full outbox keeps its newest), so there is such an event
        exactly when the last seq issued is above both ``seq`` and the last ack. It reads two
        integers and no SQLite, so it may run while another thread is inside a call.
        """
        self._conn()  # closed: OutboxError, like every other call
        return self._last_seq > max(seq, self._acked_upto)

    def losses(self) -> dict[str, int]:
        """The loss ledger: events dropped on purpose, by reason (e.g. ``"outbox_full"``)."""
        with self._errors("read"):
            return dict(self._conn().execute("SELECT reason, count FROM losses ORDER BY reason"))

    def statistics(self) -> OutboxStatistics:
        """A snapshot of depth, size on disk and lifetime counters."""
        with self._errors("read"):
            db = self._conn()
            return OutboxStatistics(
                depth=self._depth(db),
                bytes_on_disk=self._bytes_on_disk(),
                appended=self._meta(db, "appended"),
                acked=self._meta(db, "acked"),
                dropped=sum(self.losses().values()),
                next_seq=self._meta(db, "next_seq"),
            )

    def close(self) -> None:
        """Close the file (idempotent); later calls raise :class:`OutboxError`."""
        if self._db is not None:
            db, self._db = self._db, None
            db.close()

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- internals -----------------------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise OutboxError(f"outbox {self.path} is closed")
        return self._db

    def _errors(self, operation: str) -> _SqliteErrors:
        return _SqliteErrors(self.path, operation)

    def _transaction(self) -> _Transaction:
        return _Transaction(self._conn())

    @staticmethod
    def _meta(db: sqlite3.Connection, key: str) -> int:
        row = db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        if row is None:
            raise OutboxError(f"outbox meta key {key!r} is missing: the file is corrupt")
        return int(row[0])

    @staticmethod
    def _add_meta(db: sqlite3.Connection, key: str, amount: int) -> None:
        db.execute("UPDATE meta SET value = value + ? WHERE key = ?", (amount, key))

    @staticmethod
    def _depth(db: sqlite3.Connection) -> int:
        # Stored seqs are one contiguous run (module docstring), so MIN and MAX, each a single
        # B-tree descent, give the count without scanning a million rows. Two subqueries:
        # SQLite's min/max optimisation needs a query with one MIN or MAX alone, and
        # "SELECT MIN(seq), MAX(seq)" scans the table (sqlite.org/optoverview.html).
        low, high = db.execute(
            "SELECT (SELECT MIN(seq) FROM events), (SELECT MAX(seq) FROM events)"
        ).fetchone()
        return 0 if low is None else int(high) - int(low) + 1

    def _drop_overflow(self, db: sqlite3.Connection) -> None:
        excess = self._depth(db) - self.max_events
        if excess <= 0:
            return
        # Stored seqs are contiguous, so the oldest ``excess`` are one range of the key.
        low = db.execute("SELECT MIN(seq) FROM events").fetchone()[0]
        db.execute("DELETE FROM events WHERE seq < ?", (int(low) + excess,))
        self._count_loss(db, LOSS_OUTBOX_FULL, excess)
        # Set before the commit: if it fails, the next append drops the same seqs again, so
        # a value ahead of the file only sends the tail's reader to the disk, never astray.
        self.overflowed_upto = int(low) + excess - 1

    @staticmethod
    def _count_loss(db: sqlite3.Connection, reason: str, count: int) -> None:
        if count:
            db.execute(
                "INSERT INTO losses (reason, count) VALUES (?, ?)"
                " ON CONFLICT (reason) DO UPDATE SET count = count + excluded.count",
                (reason, count),
            )

    def _bytes_on_disk(self) -> int:
        total = 0
        for suffix in ("", "-wal", "-shm"):
            with suppress(FileNotFoundError):
                total += Path(f"{self.path}{suffix}").stat().st_size
        return total


def _encode_all(fields: list[EventFields]) -> tuple[list[bytes], int]:
    """Encode each event's fields; returns the bodies and how many the protocol refused."""
    bodies: list[bytes] = []
    refused: ProtocolError | None = None
    invalid = 0
    for device, boot_id, mono_ns, wall_ns, clock, readings in fields:
        try:
            bodies.append(encode_event_fields(device, boot_id, mono_ns, wall_ns, clock, readings))
        except ProtocolError as exc:
            invalid += 1
            refused = exc
    if refused is not None:
        log.warning("%d samples refused by the link protocol, not stored: %s", invalid, refused)
    return bodies, invalid


class _Transaction:
    """``BEGIN IMMEDIATE`` … ``COMMIT``, rolled back on any exception."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: type[BaseException] | None, *rest: object) -> None:
        try:
            if exc_type is None:
                self._db.execute("COMMIT")
        finally:
            # A failed COMMIT (a full disk) can leave the transaction open: end it either way.
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")


class _SqliteErrors:
    """Translate ``sqlite3.Error`` into the outbox's own errors, keeping the cause."""

    def __init__(self, path: Path, operation: str) -> None:
        self._path = path
        self._operation = operation

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: type[BaseException] | None, exc: object, tb: object) -> None:
        if not isinstance(exc, sqlite3.Error):
            return
        where = f"outbox {self._path}: {self._operation} failed"
        if getattr(exc, "sqlite_errorcode", None) == _SQLITE_FULL:
            raise OutboxFull(f"{where}: the disk is full; nothing was stored") from exc
        if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
            raise OutboxError(f"{where}: the file is in use by another process") from exc
        raise OutboxError(f"{where}: {exc}") from exc


class AsyncOutbox:
    """The outbox for Trio code: each call runs in a worker thread, one at a time.

    Get one from :func:`open_outbox`. Cancelling a call waits for its SQLite work to finish
    (``trio.to_thread.run_sync`` does not abandon the thread), so a cancelled ``append`` has
    either fully happened or not at all.

    Every call shares the one connection, so a call waits for the one in progress. Two rules
    keep that wait short for the uplink, whose acks and reads must not queue behind the
    writer: an append stores at most ``chunk_events`` events per transaction (a writer that
    fell behind then does not commit its whole backlog at once while an ack waits), and a
    reader that has caught up is told so from memory, without a call.
    """

    def __init__(
        self,
        outbox: Outbox,
        *,
        tail_events: int = TAIL_CACHE_EVENTS,
        chunk_events: int = APPEND_CHUNK_EVENTS,
    ) -> None:
        if chunk_events < 1:
            raise ValueError(f"chunk_events must be at least 1, got {chunk_events}")
        self._outbox = outbox
        self._chunk_events = chunk_events
        # One thread at a time: a sqlite3 connection must not be used concurrently.
        self._limiter = trio.CapacityLimiter(1)
        # One append at a time, so that each call's events get consecutive seqs even though
        # other calls may run between its chunks.
        self._append_lock = trio.Lock()
        self._appended = trio.Event()
        # Appended events the uplink has not read yet, consecutive seqs, oldest first: an
        # uplink that keeps up reads them from here instead of queueing behind the next
        # append for the disk. Bounded, so an outage costs disk, not memory; never more than
        # the file keeps, and what a full outbox drops leaves the tail too (append), so the
        # uplink is never served an event the loss ledger already counts as lost.
        self._tail: deque[StoredEvent] = deque()
        self._tail_events = min(tail_events, outbox.max_events)

    async def _run(self, fn: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T:
        return await trio.to_thread.run_sync(lambda: fn(*args, **kwargs), limiter=self._limiter)

    async def append(self, samples: Sequence[Sample]) -> list[StoredEvent]:
        """See :meth:`Outbox.append`, in transactions of at most ``chunk_events`` events.

        Each transaction's events are readable (and wake :meth:`wait_for_events_after`) as
        soon as it commits, and other calls (acks, reads) may run between transactions. The
        call's events still get consecutive seqs, and cancelling it once its first
        transaction has started lets the rest finish. If a later transaction fails, the
        earlier ones stay stored (and will be sent) and the error is raised.
        """
        self._outbox.check_batch_size(len(samples))
        size = self._chunk_events
        async with self._append_lock:
            stored = await self._append_chunk(samples[:size])
            with trio.CancelScope(shield=True):
                for start in range(size, len(samples), size):
                    stored += await self._append_chunk(samples[start : start + size])
        return stored

    async def _append_chunk(self, samples: Sequence[Sample]) -> list[StoredEvent]:
        stored = await self._run(self._outbox.append, samples)
        if stored:
            tail = self._tail
            if tail and tail[-1].seq + 1 != stored[0].seq:
                tail.clear()  # not contiguous (cannot happen while seqs only grow): start over
            tail.extend(stored)
            excess = len(tail) - self._tail_events
            if excess > 0:
                if excess >= len(tail):
                    tail.clear()
                else:
                    for _ in range(excess):
                        tail.popleft()
            dropped_upto = self._outbox.overflowed_upto
            while tail and tail[0].seq <= dropped_upto:
                tail.popleft()
            self._appended.set()
            self._appended = trio.Event()
        return stored

    async def read_encoded_after(self, seq: int, limit: int) -> list[StoredEvent]:
        """See :meth:`Outbox.read_encoded_after`; served from memory when ``seq`` is recent.

        The reader (the uplink) only moves forward within a connection, so what it has read
        up to ``seq`` leaves the memory tail; after a reconnect it reads from the disk.
        """
        tail = self._tail
        while tail and tail[0].seq <= seq:
            tail.popleft()
        if tail and tail[0].seq == seq + 1:
            return list(itertools.islice(tail, 0, limit))
        if not self._outbox.has_events_after(seq):
            return []  # caught up: no call, so no wait behind an append in progress
        return await self._run(self._outbox.read_encoded_after, seq, limit)

    async def ack(self, upto_seq: int) -> int:
        """See :meth:`Outbox.ack`."""
        removed = await self._run(self._outbox.ack, upto_seq)
        while self._tail and self._tail[0].seq <= upto_seq:
            self._tail.popleft()
        return removed

    async def depth(self) -> int:
        """See :meth:`Outbox.depth`."""
        return await self._run(self._outbox.depth)

    async def oldest(self) -> Event | None:
        """See :meth:`Outbox.oldest`."""
        return await self._run(self._outbox.oldest)

    async def resume_from(self) -> int:
        """See :meth:`Outbox.resume_from`."""
        return await self._run(self._outbox.resume_from)

    async def renumber_above(self, floor: int) -> int:
        """See :meth:`Outbox.renumber_above`."""
        moved = await self._run(self._outbox.renumber_above, floor)
        if moved:
            self._tail.clear()  # the cached events carry the old seqs
        return moved

    async def losses(self) -> dict[str, int]:
        """See :meth:`Outbox.losses`."""
        return await self._run(self._outbox.losses)

    async def statistics(self) -> OutboxStatistics:
        """See :meth:`Outbox.statistics`."""
        return await self._run(self._outbox.statistics)

    async def aclose(self) -> None:
        """Close the outbox once calls in progress are done; later calls raise OutboxError."""
        with trio.CancelScope(shield=True):
            await self._run(self._outbox.close)

    async def wait_for_events_after(self, seq: int) -> None:
        """Return once a stored event has a seq above ``seq``; woken by appends, never polls."""
        while True:
            # Take the event before checking, so an append that lands between the check and
            # the wait still wakes us.
            appended = self._appended
            if self._outbox.has_events_after(seq):
                return
            await appended.wait()


@asynccontextmanager
async def open_outbox(
    path: Path | str, stamper: Stamper, *, max_events: int = DEFAULT_MAX_EVENTS
) -> AsyncIterator[AsyncOutbox]:
    """Open the outbox at ``path`` for Trio code and close it on exit.

    Raises:
        OutboxError: as :class:`Outbox`.
    """
    outbox = await trio.to_thread.run_sync(lambda: Outbox(path, stamper, max_events=max_events))
    async_outbox = AsyncOutbox(outbox)
    try:
        yield async_outbox
    finally:
        await async_outbox.aclose()
