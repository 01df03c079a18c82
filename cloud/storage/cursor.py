"""Opaque, tamper-checked page cursors for keyset pagination (sans-IO).

A cursor names the last event of a page by its ordering key ``(wall_ns, gateway, seq)`` and
is bound to the query that produced it (tenant and filters). Layout, before base64url
encoding without padding (RFC 4648 §5)::

    version (1 byte) | wall_ns (int64, big-endian) | seq (int64, big-endian)
    | gateway (UTF-8, rest of the payload) | tag (16 bytes)

``tag`` is HMAC-SHA-256 (RFC 2104), truncated to 128 bits as RFC 2104 §5 allows, over the
query scope and the payload, under a key the store keeps secret. A client can therefore
neither forge a position nor replay a cursor against a different query or tenant: all of
those raise :class:`~.errors.InvalidCursor`, and so does any malformed string. No foreign
exception (``binascii.Error``, ``UnicodeDecodeError``, ``struct.error``) escapes.

The cursor is not encrypted: its position is visible to whoever holds it, which is harmless
because that client has just been shown the event it names. This module does no I/O, reads
no clock and draws no randomness; the key is an input.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import struct
from dataclasses import dataclass
from typing import Final

import cbor2

from cloud.storage.errors import InvalidCursor

CURSOR_VERSION: Final = 1
#: Longest cursor string accepted; a real one is ~60 characters plus the gateway id.
MAX_CURSOR_CHARS: Final = 1_024
TAG_BYTES: Final = 16
_HEAD = struct.Struct(">Bqq")


@dataclass(frozen=True, slots=True)
class CursorPosition:
    """The ordering key of the last event a page returned."""

    wall_ns: int
    gateway: str
    seq: int


def query_scope(
    tenant: str,
    device: str | None,
    gateway: str | None,
    since_ns: int | None,
    until_ns: int | None,
) -> bytes:
    """A canonical encoding of a query's tenant and filters, which a cursor is bound to."""
    # RFC 8949 §4.2 deterministic encoding: the same query always yields the same bytes.
    return cbor2.dumps([tenant, device, gateway, since_ns, until_ns], canonical=True)


def encode_cursor(key: bytes, scope: bytes, position: CursorPosition) -> str:
    """Build the cursor string that resumes ``scope``'s query after ``position``."""
    payload = _HEAD.pack(CURSOR_VERSION, position.wall_ns, position.seq)
    payload += position.gateway.encode("utf-8")
    raw = payload + _tag(key, scope, payload)
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def decode_cursor(key: bytes, scope: bytes, cursor: object) -> CursorPosition:
    """Check and decode a cursor produced by :func:`encode_cursor` for the same scope.

    Raises:
        InvalidCursor: for anything that is not an authentic cursor of this query.
    """
    raw = _unbase64(cursor)
    if len(raw) < _HEAD.size + TAG_BYTES:
        raise InvalidCursor("too short")
    payload, tag = raw[:-TAG_BYTES], raw[-TAG_BYTES:]
    # Compare in constant time before looking at the payload, so that a forger learns
    # nothing from which field would have failed.
    if not hmac.compare_digest(tag, _tag(key, scope, payload)):
        raise InvalidCursor("authentication failed (tampered, or from another query)")
    version, wall_ns, seq = _HEAD.unpack_from(payload)
    if version != CURSOR_VERSION:
        raise InvalidCursor(f"unsupported version {version}")
    try:
        gateway = payload[_HEAD.size :].decode("utf-8")
    except UnicodeDecodeError as exc:  # only reachable with a leaked key
        raise InvalidCursor("gateway is not UTF-8") from exc
    return CursorPosition(wall_ns=wall_ns, gateway=gateway, seq=seq)


def _tag(key: bytes, scope: bytes, payload: bytes) -> bytes:
    # Length-prefix the scope so that no (scope, payload) split is ambiguous.
    message = len(scope).to_bytes(4, "big") + scope + payload
    return hmac.new(key, message, hashlib.sha256).digest()[:TAG_BYTES]


def _unbase64(cursor: object) -> bytes:
    if not isinstance(cursor, str):
        raise InvalidCursor("not a string")
    if not cursor or len(cursor) > MAX_CURSOR_CHARS:
        raise InvalidCursor("empty or too long")
    try:
        data = cursor.encode("ascii")
        # validate=True refuses characters outside the alphabet instead of skipping them.
        raw = base64.b64decode(data + b"=" * (-len(data) % 4), altchars=b"-_", validate=True)
    except (UnicodeEncodeError, binascii.Error) as exc:
        raise InvalidCursor("not base64url") from exc
    # Only the one canonical spelling is accepted: the last character's unused low bits
    # (RFC 4648 §3.5) or a "+" or "/" would otherwise make other strings decode alike.
    if base64.urlsafe_b64encode(raw).rstrip(b"=") != data:
        raise InvalidCursor("not canonical base64url")
    return raw
