"""Desired and reported gateway configuration, releases and rollouts, kept in SQLite.

Contract:

* :class:`FleetStore` owns the tables prefixed ``fleet_`` in the core's database file; every
  public method is one transaction under a lock, so it may be used from worker threads.
* Desired configuration is versioned per gateway: :meth:`FleetStore.set_config` stores a new
  document with the next version number and never changes an old one.
* The reported state is whatever the gateway said last (its ``status`` answer, or the
  ``Result`` of a command), with the time the core received it.
* A rollout is (tenant, version, percent, force); the newest one of a tenant is in force.
  Which gateways it reaches is decided by :func:`in_rollout`, a stable hash of the gateway
  id, so raising the percentage only adds gateways.
* Every change of desired state (a configuration set, a rollout started) is logged in
  ``fleet_changes`` by SQLite triggers, whichever process or connection made it, so the
  agent finds what changed with one indexed read (:meth:`FleetStore.changes_since`) instead
  of re-reading every gateway. Changes made through this object also call the callbacks
  given to :meth:`FleetStore.subscribe` right after the commit. The log keeps the newest
  ``CHANGE_LOG_ROWS`` entries; a reader that fell further behind is told so.
* :meth:`FleetStore.record_reports` merges many gateways' reports in one transaction (one
  commit, one fsync) so a large fleet's status answers cost a few commits a second.

Not done here: talking to gateways (:mod:`cloud.fleet.agent`) or checking that a sensor
table is valid (the gateway does, with its driver factories).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from cloud.errors import InvalidInput, NotFound

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping
    from pathlib import Path

CONFIG_KEYS: Final = frozenset({"log_level", "sensors", "filters", "uplink", "rollback_after_s"})
UPLINK_KEYS: Final = frozenset(
    {"url", "batch_max_events", "batch_max_delay_ms", "reconnect_min_s", "reconnect_max_s"}
)
#: 16 command arguments of 4 KiB each (cloud.fleet.agent.config_chunks).
MAX_CONFIG_BYTES: Final = 64 * 1024
#: Rows kept in ``fleet_changes`` (the literal in the triggers below); older ones are pruned
#: by the trigger that adds a row.
CHANGE_LOG_ROWS: Final = 10_000

_SCHEMA: Final = (
    """CREATE TABLE IF NOT EXISTS fleet_config (
        tenant TEXT NOT NULL, gateway_id TEXT NOT NULL, version INTEGER NOT NULL,
        document TEXT NOT NULL, created_at REAL NOT NULL,
        PRIMARY KEY (tenant, gateway_id, version))""",
    """CREATE TABLE IF NOT EXISTS fleet_reported (
        tenant TEXT NOT NULL, gateway_id TEXT NOT NULL, report TEXT NOT NULL,
        reported_at REAL NOT NULL, PRIMARY KEY (tenant, gateway_id))""",
    """CREATE TABLE IF NOT EXISTS fleet_releases (
        version TEXT PRIMARY KEY, sha256 TEXT NOT NULL, size INTEGER NOT NULL,
        created_at REAL NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS fleet_rollouts (
        id INTEGER PRIMARY KEY AUTOINCREMENT, tenant TEXT NOT NULL, version TEXT NOT NULL,
        percent INTEGER NOT NULL, force INTEGER NOT NULL, created_at REAL NOT NULL)""",
    # gateway_id NULL: the change concerns every gateway of the tenant (a rollout).
    """CREATE TABLE IF NOT EXISTS fleet_changes (
        seq INTEGER PRIMARY KEY AUTOINCREMENT, tenant TEXT NOT NULL, gateway_id TEXT)""",
    """CREATE TRIGGER IF NOT EXISTS fleet_config_changed AFTER INSERT ON fleet_config BEGIN
        INSERT INTO fleet_changes (tenant, gateway_id) VALUES (new.tenant, new.gateway_id);
        DELETE FROM fleet_changes
            WHERE seq <= (SELECT max(seq) FROM fleet_changes) - 10000; END""",
    """CREATE TRIGGER IF NOT EXISTS fleet_rollout_changed AFTER INSERT ON fleet_rollouts BEGIN
        INSERT INTO fleet_changes (tenant, gateway_id) VALUES (new.tenant, NULL);
        DELETE FROM fleet_changes
            WHERE seq <= (SELECT max(seq) FROM fleet_changes) - 10000; END""",
)


@dataclass(frozen=True, slots=True)
class DesiredConfig:
    tenant: str
    gateway_id: str
    version: int
    document: dict[str, Any]
    created_at: float


@dataclass(frozen=True, slots=True)
class Release:
    version: str
    sha256: str
    size: int
    created_at: float


@dataclass(frozen=True, slots=True)
class Rollout:
    tenant: str
    version: str
    percent: int
    force: bool
    created_at: float


def check_document(document: object) -> dict[str, Any]:
    """Shape checks the core can make; the gateway validates sensors with its drivers.

    Raises:
        InvalidInput: not an object, unknown keys, wrong types, or too large.
    """
    if not isinstance(document, dict):
        raise InvalidInput("a configuration is a JSON object")
    unknown = set(document) - CONFIG_KEYS
    if unknown:
        raise InvalidInput(
            f"unknown configuration keys {sorted(unknown)}; known {sorted(CONFIG_KEYS)}"
        )
    if "sensors" in document and not (
        isinstance(document["sensors"], list)
        and all(isinstance(s, dict) for s in document["sensors"])
    ):
        raise InvalidInput("sensors must be a list of objects")
    if not isinstance(document.get("filters", {}), dict):
        raise InvalidInput("filters must be an object (the [filters] table)")
    uplink = document.get("uplink", {})
    if not isinstance(uplink, dict) or set(uplink) - UPLINK_KEYS:
        raise InvalidInput(f"uplink must be an object with keys among {sorted(UPLINK_KEYS)}")
    if len(json.dumps(document, sort_keys=True).encode("utf-8")) > MAX_CONFIG_BYTES:
        raise InvalidInput(f"a configuration is at most {MAX_CONFIG_BYTES} bytes of JSON")
    return document


def in_rollout(gateway_id: str, version: str, percent: int) -> bool:
    """Whether ``gateway_id`` is among the first ``percent`` % for ``version`` (stable)."""
    digest = hashlib.sha256(f"{version}/{gateway_id}".encode()).digest()
    return int.from_bytes(digest[:4], "big") % 100 < percent


class FleetStore:
    """The fleet tables; open one per process next to the registry."""

    def __init__(self, db_path: Path, *, now: Callable[[], float] = time.time) -> None:
        self._now = now
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(db_path, check_same_thread=False, timeout=10.0)
        self._listeners: list[Callable[[str, str | None], None]] = []
        with self._tx() as db:
            for statement in _SCHEMA:
                db.execute(statement)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> FleetStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- change notification ---------------------------------------------------------------

    def subscribe(self, callback: Callable[[str, str | None], None]) -> Callable[[], None]:
        """Call ``callback(tenant, gateway_id or None)`` after each change made through this
        object (from the thread that made it); returns the function that unsubscribes."""
        self._listeners.append(callback)
        return lambda: self._listeners.remove(callback)

    def latest_change(self) -> int:
        """The sequence number of the newest logged change (0 when there is none)."""
        with self._tx() as db:
            (seq,) = db.execute("SELECT coalesce(max(seq), 0) FROM fleet_changes").fetchone()
        return int(seq)

    def changes_since(self, seq: int) -> tuple[int, list[tuple[str, str | None]] | None]:
        """Changes logged after ``seq``: ``(newest seq, [(tenant, gateway id or None)])``.

        The list is None when changes after ``seq`` were already pruned: the caller must then
        treat every gateway as changed.
        """
        with self._tx() as db:
            rows = db.execute(
                "SELECT seq, tenant, gateway_id FROM fleet_changes WHERE seq > ? ORDER BY seq",
                (seq,),
            ).fetchall()
            if not rows:
                return seq, []
            (oldest,) = db.execute("SELECT min(seq) FROM fleet_changes").fetchone()
        newest = int(rows[-1][0])
        if oldest > seq + 1:  # some were pruned before this reader saw them
            return newest, None
        return newest, [(tenant, gateway_id) for _seq, tenant, gateway_id in rows]

    def _notify(self, tenant: str, gateway_id: str | None) -> None:
        for callback in list(self._listeners):
            callback(tenant, gateway_id)

    # --- configuration ---------------------------------------------------------------------

    def set_config(self, tenant: str, gateway_id: str, document: object) -> DesiredConfig:
        """Store ``document`` as the gateway's next desired version. Raises: InvalidInput."""
        checked = check_document(document)
        with self._tx() as db:
            (latest,) = db.execute(
                "SELECT coalesce(max(version), 0) FROM fleet_config "
                "WHERE tenant = ? AND gateway_id = ?",
                (tenant, gateway_id),
            ).fetchone()
            desired = DesiredConfig(tenant, gateway_id, latest + 1, checked, self._now())
            db.execute(
                "INSERT INTO fleet_config VALUES (?, ?, ?, ?, ?)",
                (tenant, gateway_id, desired.version, json.dumps(checked), desired.created_at),
            )
        self._notify(tenant, gateway_id)
        return desired

    def desired_config(self, tenant: str, gateway_id: str) -> DesiredConfig | None:
        with self._tx() as db:
            row = db.execute(
                "SELECT version, document, created_at FROM fleet_config "
                "WHERE tenant = ? AND gateway_id = ? ORDER BY version DESC LIMIT 1",
                (tenant, gateway_id),
            ).fetchone()
        if row is None:
            return None
        return DesiredConfig(tenant, gateway_id, row[0], json.loads(row[1]), row[2])

    # --- reported state ----------------------------------------------------------------------

    def record_reports(self, reports: Mapping[tuple[str, str], dict[str, Any]]) -> None:
        """Merge each ``(tenant, gateway id) -> report`` in one transaction (one commit)."""
        if not reports:
            return
        now = self._now()
        with self._tx() as db:
            for (tenant, gateway_id), report in reports.items():
                row = db.execute(
                    "SELECT report FROM fleet_reported WHERE tenant = ? AND gateway_id = ?",
                    (tenant, gateway_id),
                ).fetchone()
                merged = {**(json.loads(row[0]) if row else {}), **report}
                db.execute(
                    "INSERT OR REPLACE INTO fleet_reported VALUES (?, ?, ?, ?)",
                    (tenant, gateway_id, json.dumps(merged, sort_keys=True), now),
                )

    def reported(self, tenant: str, gateway_id: str) -> tuple[dict[str, Any], float | None]:
        with self._tx() as db:
            row = db.execute(
                "SELECT report, reported_at FROM fleet_reported "
                "WHERE tenant = ? AND gateway_id = ?",
                (tenant, gateway_id),
            ).fetchone()
        return (json.loads(row[0]), row[1]) if row else ({}, None)

    # --- releases and rollouts ---------------------------------------------------------------

    def add_release(self, version: str, sha256: str, size: int) -> Release:
        release = Release(version, sha256, size, self._now())
        with self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO fleet_releases VALUES (?, ?, ?, ?)",
                (version, sha256, size, release.created_at),
            )
        return release

    def get_release(self, version: str) -> Release:
        """Raises: NotFound."""
        with self._tx() as db:
            row = db.execute(
                "SELECT * FROM fleet_releases WHERE version = ?", (version,)
            ).fetchone()
        if row is None:
            raise NotFound(f"no release {version}; publish it first")
        return Release(*row)

    def start_rollout(self, tenant: str, version: str, percent: int, *, force: bool) -> Rollout:
        """Raises: InvalidInput (percent outside 0..100), NotFound (unpublished version)."""
        if not 0 <= percent <= 100:
            raise InvalidInput("percent must be 0..100")
        self.get_release(version)
        rollout = Rollout(tenant, version, percent, force, self._now())
        with self._tx() as db:
            db.execute(
                "INSERT INTO fleet_rollouts (tenant, version, percent, force, created_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (tenant, version, percent, int(force), rollout.created_at),
            )
        self._notify(tenant, None)
        return rollout

    def rollout(self, tenant: str) -> Rollout | None:
        with self._tx() as db:
            row = db.execute(
                "SELECT tenant, version, percent, force, created_at FROM fleet_rollouts "
                "WHERE tenant = ? ORDER BY id DESC LIMIT 1",
                (tenant,),
            ).fetchone()
        return None if row is None else Rollout(row[0], row[1], row[2], bool(row[3]), row[4])

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock, self._conn:
            yield self._conn
