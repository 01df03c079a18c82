"""The access log's hash chain: sealing one record and checking a sequence of lines.

Each chained record is one JSON object whose last three members are ``seq`` (1, 2, 3...,
continuing across rotated files), ``prev`` (the ``mac`` of the record before it; 64 zeros
for the very first record) and ``mac``::

    {"ts":...,"event":...,...,"seq":7,"prev":"<64 hex>","mac":"<64 hex>"}

``mac`` is HMAC-SHA-256 (RFC 2104) under the chain key, over the exact bytes of the line up to
``prev``'s value and with ``,"mac":...`` removed, i.e. over ``{...,"prev":"<hex>"}``. Checking
works on those bytes, never on a re-serialisation, so no JSON library difference can make a
good line look bad. Editing, deleting, inserting or reordering a record breaks the chain at
that point; forging a new chain needs the key, which lives outside the log
(``keys/access-log.key``).

Contract: pure functions over bytes; no I/O, no clock. :func:`check_lines` gives a
:class:`ChainReport` or raises :class:`ChainBroken` naming the first bad line.

Not done here: detecting that records were cut off the *end* of the log. A chain cannot show
that by itself; :class:`cloud.accesslog.AccessLog` keeps the last ``seq`` and ``mac`` in a
separate head file that the verifier compares with the last line, and shipping the log off the
host is what protects against an attacker who can rewrite both.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cloud.errors import CloudError

if TYPE_CHECKING:
    from collections.abc import Iterable

GENESIS = "0" * 64
KEY_BYTES = 32
_SUFFIX = re.compile(rb',"mac":"([0-9a-f]{64})"\}\r?\n?\Z')
_HEX64 = re.compile(r"[0-9a-f]{64}")


class ChainBroken(CloudError):
    """The chain does not verify; ``where`` is ``<source>:<line number>``."""

    def __init__(self, where: str, reason: str) -> None:
        super().__init__(f"{where}: {reason}")
        self.where = where
        self.reason = reason


@dataclass(frozen=True, slots=True)
class ChainHead:
    """The last sealed record: its sequence number and mac."""

    seq: int
    mac: str


@dataclass(frozen=True, slots=True)
class ChainReport:
    """What a successful check covered."""

    records: int
    first_seq: int
    last: ChainHead
    starts_at_genesis: bool


def mac(key: bytes, body: bytes) -> str:
    return hmac.new(key, body, hashlib.sha256).hexdigest()


def seal(key: bytes, unsealed: bytes, head: ChainHead) -> tuple[bytes, ChainHead]:
    """Chain one record after ``head``.

    ``unsealed`` is a compact JSON object (``{...}``) without ``seq``, ``prev`` or ``mac``.
    Returns the full line (newline included) and the new head.
    """
    if not (unsealed.startswith(b"{") and unsealed.endswith(b"}")):
        raise ValueError("a record must be a JSON object")
    seq = head.seq + 1
    sep = b"" if unsealed == b"{}" else b","
    body = unsealed[:-1] + sep + f'"seq":{seq},"prev":"{head.mac}"}}'.encode()
    tag = mac(key, body)
    return body[:-1] + f',"mac":"{tag}"}}\n'.encode(), ChainHead(seq, tag)


def check_lines(
    key: bytes, lines: Iterable[tuple[str, bytes]], *, after: ChainHead | None = None
) -> ChainReport:
    """Check ``(where, line)`` pairs in order.

    ``after`` is the head the first line must follow; ``None`` accepts whatever the first line
    says (its own mac is still checked), which is how a log whose older rotated files were
    deleted is checked.

    Raises:
        ChainBroken: the first line whose mac, ``seq`` or ``prev`` is wrong, or that is not a
            sealed record at all.
    """
    head = after
    first_seq = 0
    count = 0
    genesis = False
    for where, line in lines:
        seq, prev, tag = _open(key, where, line)
        if head is not None and (prev != head.mac or seq != head.seq + 1):
            raise ChainBroken(
                where, f"does not follow record {head.seq} (a record was removed or inserted)"
            )
        if head is None:
            first_seq = seq
            genesis = seq == 1 and prev == GENESIS
        elif count == 0:
            first_seq = seq
            genesis = after is not None and after.seq == 0
        head = ChainHead(seq, tag)
        count += 1
    if head is None:
        return ChainReport(0, 0, ChainHead(0, GENESIS), True)
    return ChainReport(count, first_seq, head, genesis)


def _open(key: bytes, where: str, line: bytes) -> tuple[int, str, str]:
    found = _SUFFIX.search(line)
    if found is None:
        raise ChainBroken(where, "not a sealed record (no mac)")
    body = line[: found.start()] + b"}"
    tag = found.group(1).decode()
    if not hmac.compare_digest(mac(key, body), tag):
        raise ChainBroken(where, "mac does not match (the record was changed)")
    try:
        record = json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:  # a valid mac over non-JSON: wrong key use
        raise ChainBroken(where, "not a JSON object") from exc
    seq = record.get("seq") if isinstance(record, dict) else None
    prev = record.get("prev") if isinstance(record, dict) else None
    if isinstance(seq, bool) or not isinstance(seq, int) or seq < 1:
        raise ChainBroken(where, "no valid seq")
    if not isinstance(prev, str) or not _HEX64.fullmatch(prev):
        raise ChainBroken(where, "no valid prev")
    return seq, prev, tag
