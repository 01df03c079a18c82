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
* **Tamper evidence.** Given a ``chain_key`` (the core always gives one: :func:`open_access_log`),
  every record is sealed into an HMAC-SHA-256 chain (:mod:`cloud.auditchain`): it carries
  ``seq``, ``prev`` (the previous record's ``mac``) and its own ``mac``. The chain continues
  across processes writing the same file (an ``flock`` on the head file serialises them; the
  last line of the file is the chain's head) and across rotation: the log is reopened when its
  path no longer names the open file, and ``<log>.head`` carries the last ``seq`` and ``mac``
  into the new file. :func:`verify_log` checks the rotated files and the live one as one chain.
* **Rotation** is by rename (``logrotate`` without ``copytruncate``, no signal needed):
  ``access.jsonl`` → ``access.jsonl.1`` (→ ``.2``...; ``.gz`` is read too). ``copytruncate``
  would lose the records written between its copy and its truncation, which the chain reports
  as a break.

Not done here: shipping off the host, and general application logging (that is the logging
module's job; this log cannot be switched off).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import fcntl
import gzip
import json
import math
import os
import re
import secrets
import threading
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from cloud import auditchain
from cloud.auditchain import GENESIS, ChainBroken, ChainHead, ChainReport
from cloud.errors import ConfigError, InvalidInput

if TYPE_CHECKING:
    from cloud.home import CoreHome

REDACTED = "[redacted]"
REDACTED_JWT = "[redacted-jwt]"
SENSITIVE_NAME_PARTS = ("token", "password", "secret", "authorization", "cookie", "key")
# Field names the log itself uses; a caller cannot overwrite them.
RESERVED_FIELDS = frozenset({"ts", "event", "seq", "prev", "mac"})
CHAIN_KEY_FILE = "access-log.key"
# The sealed suffix of a record (cloud.auditchain): enough to find the chain's head.
_TAIL = re.compile(rb'"seq":(\d+),"prev":"[0-9a-f]{64}","mac":"([0-9a-f]{64})"\}\s*\Z')
_ROTATED = re.compile(r"\.(\d+)(\.gz)?")
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
        chain_key: seal records into a hash chain under this key (see the module docstring).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        now: Clock = _utc_now,
        chain_key: bytes | None = None,
    ) -> None:
        self.path = Path(path)
        self._now = now
        self._lock = threading.Lock()
        self._fd: int | None = _open_append(self.path)
        self._key = chain_key
        self._head_fd: int | None = None
        self._cached: tuple[int, int, ChainHead] | None = None  # (inode, size, head)
        if chain_key is not None:
            flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW
            self._head_fd = os.open(head_path(self.path), flags, 0o600)

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
        line = json.dumps(entry, ensure_ascii=False, separators=(",", ":"))
        self._write(line.encode("utf-8"))

    def close(self) -> None:
        with self._lock:
            for fd in (self._fd, self._head_fd):
                if fd is not None:
                    os.close(fd)
            self._fd = self._head_fd = None

    def __enter__(self) -> AccessLog:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _write(self, record: bytes) -> None:
        with self._lock:
            if self._fd is None:
                raise ValueError("access log is closed")
            self._reopen_if_rotated()
            if self._key is None or self._head_fd is None:
                _write_all(self._fd, record + b"\n")
                return
            # Another process (a CLI command) may append to the same log: the lock makes
            # "find the head, seal, append" one step across processes.
            fcntl.flock(self._head_fd, fcntl.LOCK_EX)
            try:
                line, head = auditchain.seal(self._key, record, self._current_head())
                _write_all(self._fd, line)
                os.pwrite(self._head_fd, _head_bytes(head), 0)
                os.ftruncate(self._head_fd, len(_head_bytes(head)))
                info = os.fstat(self._fd)
                self._cached = (info.st_ino, info.st_size, head)
            finally:
                fcntl.flock(self._head_fd, fcntl.LOCK_UN)

    def _reopen_if_rotated(self) -> None:
        assert self._fd is not None
        try:
            same = os.path.samestat(os.stat(self.path), os.fstat(self._fd))
        except FileNotFoundError:
            same = False
        if not same:  # renamed away by rotation: continue in a new file at the path
            os.close(self._fd)
            self._fd = None
            self._fd = _open_append(self.path)

    def _current_head(self) -> ChainHead:
        assert self._fd is not None
        assert self._head_fd is not None
        info = os.fstat(self._fd)
        if self._cached is not None and self._cached[:2] == (info.st_ino, info.st_size):
            return self._cached[2]  # nobody wrote since our last record
        if info.st_size > 0:
            found = _TAIL.search(_last_line(self._fd, info.st_size))
            if found is not None:
                return ChainHead(int(found.group(1)), found.group(2).decode())
            # Someone appended an unsealed line: continue from the head file, and the
            # verifier reports that line (logging must never stop because of it).
        return _parse_head(os.pread(self._head_fd, 256, 0)) or ChainHead(0, GENESIS)


def open_access_log(home: CoreHome, *, now: Clock = _utc_now) -> AccessLog:
    """The core's access log, chained under the home's key (created on first use).

    A log left by a version that did not chain is moved aside (``access-unchained-<time>.jsonl``)
    so that the chained log starts clean; the move itself is the new log's first record.
    """
    key = load_chain_key(home, create=True)
    moved = _set_aside_unchained(home.access_log, now())
    log = AccessLog(home.access_log, now=now, chain_key=key)
    if moved is not None:
        log.record("accesslog.unchained_set_aside", file=moved.name)
    return log


def load_chain_key(home: CoreHome, *, create: bool = False) -> bytes:
    """The chain key from ``keys/access-log.key`` (hex; created 0600 when ``create``).

    Raises:
        ConfigError: the file is missing (and not ``create``) or malformed.
    """
    from cloud.home import write_private_file

    path = home.keys_dir / CHAIN_KEY_FILE
    if create and not path.exists():
        write_private_file(path, secrets.token_hex(auditchain.KEY_BYTES).encode() + b"\n")
    try:
        key = bytes.fromhex(path.read_text(encoding="ascii").strip())
    except FileNotFoundError as exc:
        raise ConfigError("no access-log chain key", key=f"keys/{CHAIN_KEY_FILE}") from exc
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ConfigError(f"unreadable chain key: {exc}", key=f"keys/{CHAIN_KEY_FILE}") from exc
    if len(key) != auditchain.KEY_BYTES:
        raise ConfigError("the chain key must be 32 bytes", key=f"keys/{CHAIN_KEY_FILE}")
    return key


def head_path(path: Path) -> Path:
    return path.with_name(path.name + ".head")


def log_files(path: Path) -> list[Path]:
    """The rotated files of ``path`` (oldest first: highest number first), then ``path``."""
    rotated: list[tuple[int, Path]] = []
    for candidate in path.parent.glob(path.name + ".*"):
        found = _ROTATED.fullmatch(candidate.name[len(path.name) :])
        if found:
            rotated.append((int(found.group(1)), candidate))
    files = [p for _, p in sorted(rotated, key=lambda item: -item[0])]
    return [*files, path] if path.exists() else files


def verify_log(path: Path, key: bytes) -> ChainReport:
    """Check the chain through every rotated file and the live one, then the head file.

    Raises:
        ChainBroken: the first line that does not verify, or a head file that says the chain
            went further than the last line (records cut off the end).
    """
    report = auditchain.check_lines(key, _numbered_lines(log_files(path)))
    try:
        head = _parse_head(head_path(path).read_bytes())
    except FileNotFoundError:
        head = None
    if head is not None and head != report.last:
        raise ChainBroken(
            head_path(path).name,
            f"the head is record {head.seq} but the last record found is {report.last.seq}"
            " (records were removed from the end)",
        )
    return report


def _numbered_lines(files: list[Path]) -> Iterator[tuple[str, bytes]]:
    for file in files:
        opener = gzip.open if file.suffix == ".gz" else open
        with opener(file, "rb") as stream:
            for number, line in enumerate(stream, start=1):
                yield f"{file.name}:{number}", line


def _open_append(path: Path) -> int:
    # Read access too: the chain's head is read back from the file's last line.
    flags = os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW
    return os.open(path, flags, 0o600)


def _write_all(fd: int, data: bytes) -> None:
    # One write() on an O_APPEND fd: the line lands whole at the end of the file, and
    # unbuffered os.write means it is in the kernel when record() returns.
    view = memoryview(data)
    while view:  # a short write (nearly full disk) is finished, or raises OSError
        view = view[os.write(fd, view) :]


def _last_line(fd: int, size: int) -> bytes:
    chunk = 4096
    end = size
    data = b""
    while end > 0:
        start = max(0, end - chunk)
        data = os.pread(fd, end - start, start) + data
        end = start
        if data.rstrip(b"\n").rfind(b"\n") >= 0:
            break
    return data.rstrip(b"\n").rsplit(b"\n", 1)[-1]


def _head_bytes(head: ChainHead) -> bytes:
    return json.dumps({"seq": head.seq, "mac": head.mac}).encode()


def _parse_head(data: bytes) -> ChainHead | None:
    try:
        value = json.loads(data)
        return ChainHead(int(value["seq"]), str(value["mac"]))
    except (ValueError, KeyError, TypeError):
        return None  # empty (never written) or damaged: the log lines decide


def _set_aside_unchained(path: Path, moment: datetime) -> Path | None:
    with contextlib.suppress(FileNotFoundError):
        if path.stat().st_size > 0:
            with path.open("rb") as stream:
                size = os.fstat(stream.fileno()).st_size
                if _TAIL.search(_last_line(stream.fileno(), size)) is None:
                    stamp = moment.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
                    target = path.with_name(f"access-unchained-{stamp}.jsonl")
                    path.rename(target)
                    return target
    return None


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
