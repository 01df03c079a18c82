"""The always-on access log: one JSON object per line in ``logs/access.jsonl``.

Contract:

* :meth:`AccessLog.record` writes ``{"ts": <ISO-8601 UTC>, "event": ..., **fields}`` as one
  line with a single ``write`` on an ``O_APPEND`` descriptor and flushes it before returning:
  this is an audit trail, so a crash must not eat the last records. A record is written
  whole or not at all between Trio tasks (the call never awaits) and between threads (a
  lock).
* Redaction is not optional. A field whose name contains ``token``, ``password``, ``secret``,
  ``authorization``, ``cookie`` or ``key`` (any case, at any nesting depth) is written as
  ``"[redacted]"``; and in every string value, anything that looks like a JWT (three
  base64url parts whose first decodes to a JSON object, or any ``eyJ...`` run) is replaced
  with ``"[redacted-jwt]"``. Bytes are never written, only their length. Use ``jti`` (not
  ``token_id``) for a token's identifier: the name rule would hide it.
* The file is created 0600 (ASVS 4.0.3 §7.3.3: logs are protected).

Not done here: rotation and shipping (use logrotate with ``copytruncate`` or a collector),
and general application logging (that is the logging module's job; this log cannot be
switched off).
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import os
import re
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path

from cloud.errors import InvalidInput

REDACTED = "[redacted]"
REDACTED_JWT = "[redacted-jwt]"
SENSITIVE_NAME_PARTS = ("token", "password", "secret", "authorization", "cookie", "key")
# Field names the log itself uses; a caller cannot overwrite them.
RESERVED_FIELDS = frozenset({"ts", "event"})
# Bound the recursion into nested values: a log line is not a data dump.
MAX_DEPTH = 8

# Three dot-separated base64url runs (RFC 7515 §7.1 compact serialisation); the signature part
# may be empty (alg=none). The header check below keeps host names such as a.b.c out of it.
# Matches start only at the beginning of a run and quantifiers are possessive, so a long
# value is scanned in linear time (a naive pattern is quadratic: a cheap log-flooding DoS).
_THREE_PARTS = re.compile(
    r"(?<![A-Za-z0-9_-])[A-Za-z0-9_-]{2,}+\.[A-Za-z0-9_-]{2,}+\.[A-Za-z0-9_-]*+"
)
# base64url of '{"' is 'eyJ': any such run is a JSON object in base64, i.e. a JWT header or
# a fragment of one (a truncated token is still a secret).
_EYJ_RUN = re.compile(r"eyJ[A-Za-z0-9_-]{4,}")

Clock = Callable[[], datetime]


def _utc_now() -> datetime:
    return datetime.now(UTC)


class AccessLog:
    """Append-only JSON-lines audit log.

    Args:
        path: the log file (created 0600 if missing, appended to otherwise).
        now: returns an aware datetime (injectable for tests).
    """

    def __init__(self, path: str | os.PathLike[str], *, now: Clock = _utc_now) -> None:
        self.path = Path(path)
        self._now = now
        self._lock = threading.Lock()
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW
        self._fd: int | None = os.open(self.path, flags, 0o600)

    def record(self, event: str, **fields: object) -> None:
        """Append one record.

        Raises:
            InvalidInput: a field is named ``ts`` or ``event``.
            ValueError: the log was closed.
        """
        clash = RESERVED_FIELDS & fields.keys()
        if clash:
            raise InvalidInput(f"reserved access-log field names: {sorted(clash)}")
        entry: dict[str, object] = {"ts": _iso(self._now()), "event": scrub_text(event)}
        entry.update(redact(fields))
        line = json.dumps(entry, ensure_ascii=False, separators=(",", ":")) + "\n"
        self._write(line.encode("utf-8"))

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def __enter__(self) -> AccessLog:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _write(self, data: bytes) -> None:
        with self._lock:
            if self._fd is None:
                raise ValueError("access log is closed")
            # One write() on an O_APPEND fd: the line lands whole at the end of the file, and
            # unbuffered os.write means it is in the kernel when record() returns.
            view = memoryview(data)
            while view:  # a short write (nearly full disk) is finished, or raises OSError
                view = view[os.write(self._fd, view) :]


def redact(fields: Mapping[str, object], depth: int = 0) -> dict[str, object]:
    """A copy of ``fields`` with sensitive names and JWT-looking values replaced."""
    return {
        str(name): REDACTED if is_sensitive_name(str(name)) else _clean(value, depth + 1)
        for name, value in fields.items()
    }


def is_sensitive_name(name: str) -> bool:
    lowered = name.lower()
    return any(part in lowered for part in SENSITIVE_NAME_PARTS)


def scrub_text(text: str) -> str:
    """Replace every JWT-looking substring of ``text``."""
    text = _THREE_PARTS.sub(_maybe_jwt, text)
    return _EYJ_RUN.sub(REDACTED_JWT, text)


def _clean(value: object, depth: int) -> object:
    if depth > MAX_DEPTH:
        return "[too deep]"
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)  # JSON has no NaN/Infinity
    if isinstance(value, bytes | bytearray | memoryview):
        return f"[{len(value)} bytes]"
    if isinstance(value, Mapping):
        return redact(value, depth)
    if isinstance(value, list | tuple | set | frozenset):
        return [_clean(item, depth + 1) for item in value]
    # Enums, paths, exceptions...: their text, scrubbed like any other string.
    return scrub_text(value if isinstance(value, str) else str(value))


def _maybe_jwt(match: re.Match[str]) -> str:
    header = match.group(0).split(".", 1)[0]
    try:
        decoded = base64.urlsafe_b64decode(header + "=" * (-len(header) % 4))
    except (binascii.Error, ValueError):
        return match.group(0)
    return REDACTED_JWT if decoded.lstrip().startswith(b"{") else match.group(0)


def _iso(moment: datetime) -> str:
    # RFC 3339 profile of ISO 8601, always UTC with a Z (ASVS 5.0 §16.2.2).
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
