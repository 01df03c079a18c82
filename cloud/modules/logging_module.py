"""The logging module: a link client that writes everything it may see as JSON records.

It is a module like any other (brief: "every module connects over WSS with a JWT that the core
issued"): it connects to the link with its own module token, subscribes to the topic patterns
that token allows, and appends one JSON object per line to its output file for every live
event delivered to it, plus records for its own life (``module.started``, ``module.subscribed``,
``module.link_lost``, ``module.stopped``). Starting or stopping it never touches the core;
the access log is written whatever this module does (seed: "Access logs are still logged even
if the logs module is not enabled").

Contract:

* :func:`event_record` and :func:`lifecycle_record` are pure: a delivered event or a life
  event in, a JSON-ready dict out. Readings are SenML (RFC 8428) field names; values go through
  the access log's redaction (:func:`cloud.accesslog.redact`), so a field that looks like a
  token is never written.
* :func:`run_logging_module` connects, subscribes, writes, and reconnects with capped, jittered
  backoff until ``stop`` is set; ``task_status.started()`` fires once the first subscription is
  confirmed. The output file is created 0600 and appended to.

Not done here: delivery of events that happened while the module was stopped (the link's
subscriptions are live only; the REST API has history), and rotation of its output (rename it;
the module reopens the path at its next record).
"""

from __future__ import annotations

import base64
import json
import os
import random
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio
from websockets.exceptions import ConnectionClosed, InvalidHandshake
from websockets.trio.client import connect

from cloud.accesslog import redact
from protocol import limits
from protocol.errors import ProtocolError
from protocol.messages import Deliver, Subscribed
from protocol.session import PeerError, UplinkSession, Welcomed

if TYPE_CHECKING:
    import ssl

    from protocol.messages import Delivered

MODULE_ID = "logging"
SOFTWARE = "assetbook-logging/1"
BACKOFF_MIN_S = 0.5
BACKOFF_MAX_S = 30.0


@dataclass(frozen=True, slots=True)
class LoggingModuleConfig:
    """Where to connect, with what, and where to write.

    ``token`` is held in memory only: it is never written to the output or logged.
    """

    link_url: str
    ssl_context: ssl.SSLContext
    token: str = ""
    patterns: tuple[str, ...] = ("#",)
    out: Path = Path("logging-module.jsonl")
    module_id: str = MODULE_ID

    def __repr__(self) -> str:  # keep the token out of tracebacks and debug output
        return f"LoggingModuleConfig(link_url={self.link_url!r}, out={str(self.out)!r})"


def event_record(item: Delivered, now: datetime) -> dict[str, Any]:
    """The JSON record for one delivered event."""
    event = item.event
    readings = []
    for reading in event.readings:
        value = reading.value
        entry: dict[str, Any] = {"n": reading.name}
        if reading.unit:
            entry["u"] = reading.unit
        if isinstance(value, bool):
            entry["vb"] = value
        elif isinstance(value, str):
            entry["vs"] = value
        elif isinstance(value, bytes):
            entry["vd"] = base64.urlsafe_b64encode(value).rstrip(b"=").decode()
        else:
            entry["v"] = value
        readings.append(entry)
    record = {
        "ts": _iso(now),
        "kind": "event",
        "gateway": item.gateway,
        "device": event.device,
        "seq": event.seq,
        "wall_ns": event.wall_ns,
        "clock": event.clock.name.lower(),
        "readings": readings,
    }
    return redact(record)


def lifecycle_record(kind: str, now: datetime, **fields: object) -> dict[str, Any]:
    """A record about the module itself (``module.started`` and so on)."""
    return redact({"ts": _iso(now), "kind": kind, **fields})


class RecordWriter:
    """Appends JSON lines to ``path`` (0600), reopening it when it was renamed away."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = self._open()

    def write(self, record: dict[str, Any]) -> None:
        try:
            same = os.path.samestat(os.stat(self.path), os.fstat(self._fd))
        except FileNotFoundError:
            same = False
        if not same:
            os.close(self._fd)
            self._fd = self._open()
        line = json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n"
        data = memoryview(line.encode())
        while data:
            data = data[os.write(self._fd, data) :]

    def close(self) -> None:
        os.close(self._fd)

    def _open(self) -> int:
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW
        return os.open(self.path, flags, 0o600)


async def run_logging_module(
    config: LoggingModuleConfig,
    stop: trio.Event,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Log every delivered event until ``stop`` is set (reconnecting as needed)."""
    writer = RecordWriter(config.out)
    writer.write(lifecycle_record("module.started", _now(), patterns=list(config.patterns)))
    started = False

    def on_subscribed() -> None:
        nonlocal started
        if not started:
            started = True
            task_status.started()

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_stop_on, stop, nursery.cancel_scope)
            delay = BACKOFF_MIN_S
            while True:
                try:
                    await _session(config, writer, on_subscribed)
                    reason = "closed by the core"
                except (OSError, ConnectionClosed, InvalidHandshake, ProtocolError) as exc:
                    reason = type(exc).__name__
                writer.write(lifecycle_record("module.link_lost", _now(), reason=reason))
                # Full jitter (no thundering herd after a core restart); randomness only paces.
                await trio.sleep(random.uniform(0, delay))  # noqa: S311
                delay = min(delay * 2, BACKOFF_MAX_S)
    finally:
        writer.write(lifecycle_record("module.stopped", _now()))
        writer.close()


async def _stop_on(stop: trio.Event, scope: trio.CancelScope) -> None:
    await stop.wait()
    scope.cancel()


async def _session(config: LoggingModuleConfig, writer: RecordWriter, on_subscribed: Any) -> None:
    async with connect(
        config.link_url,
        ssl=config.ssl_context,
        additional_headers={"Authorization": f"Bearer {config.token}"},
        subprotocols=[limits.SUBPROTOCOL],  # type: ignore[list-item]
        compression=None,
        max_size=limits.MAX_MESSAGE_BYTES,
        open_timeout=10,
        user_agent_header=SOFTWARE,
    ) as connection:
        session = UplinkSession(config.module_id, SOFTWARE, secrets.token_bytes(16))
        await connection.send(session.hello(0))  # sends no events: nothing to resume
        while True:
            data = await connection.recv()
            if isinstance(data, str):
                raise ProtocolError("the core sent a text frame")
            match session.receive(data):
                case Welcomed():
                    _request, message = session.subscribe(config.patterns)
                    await connection.send(message)
                case Subscribed(_request, patterns):
                    writer.write(
                        lifecycle_record("module.subscribed", _now(), patterns=list(patterns))
                    )
                    on_subscribed()
                case Deliver(items):
                    now = _now()
                    for item in items:
                        writer.write(event_record(item, now))
                case PeerError(code, reason, _request):
                    writer.write(
                        lifecycle_record("module.refused", _now(), code=code.name, reason=reason)
                    )
                case _:
                    pass


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
