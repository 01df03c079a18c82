"""The secrets key kept outside the database: sealing (AES-256-GCM) and blind indexes (HMAC).

The key file is ``<home>/keys/secrets.json``, mode 0600, created by ``assetbook core init``::

    {"active": 2, "keys": {"1": "<base64 32 bytes>", "2": "<base64 32 bytes>"}}

Contract:

* :func:`load_keyring` refuses (``SecretKeyError``) a missing file, a file readable or writable
  by group or others, or malformed content: the core does not start without its key, and never
  falls back to "no pepper".
* :meth:`Keyring.seal` encrypts with the active version under AES-256-GCM (NIST SP 800-38D)
  with a fresh 96-bit nonce and the record's identity as associated data, so a sealed value
  copied onto another row or into another purpose does not open. The result names the key
  version: ``ab1$<version>$<base64url(nonce ‖ ciphertext ‖ tag)>``.
* :meth:`Keyring.open` accepts any version still in the file; :meth:`needs_reseal` says when a
  value should be re-sealed under the active version (key rotation, docs/security.md).
* :meth:`Keyring.index` is HMAC-SHA-256 under a key derived from each version (HKDF, RFC
  5869, with a distinct ``info``), so the index and the seal never share a key.
  :meth:`index_candidates` gives the index under every version for lookups during rotation.

The sealing format and the version logic live in :class:`Keyring` and go through four
primitives (``versions``, ``_encrypt``, ``_decrypt``, ``_hmac``); the file-backed keyring
implements them with the raw keys above, and
:class:`cloud.identity.pkcs11_keyring.Pkcs11Keyring` implements them inside a PKCS#11 token,
so both produce the same ``ab1$`` strings and callers never tell them apart.

Not done here: choosing what to seal (callers do).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import secrets
import stat
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from cloud.identity.errors import SealError, SecretKeyError

if TYPE_CHECKING:
    from pathlib import Path

KEY_BYTES = 32
NONCE_BYTES = 12  # SP 800-38D §8.2: 96-bit nonces, random (§8.2.2) with < 2^32 seals per key
SEAL_PREFIX = "ab1"
KEY_FILE_NAME = "secrets.json"


@dataclass(frozen=True, slots=True)
class Keyring:
    """Key versions (version → 32 raw bytes) and the version used for new seals."""

    active: int
    keys: dict[int, bytes] = field(repr=False)

    @property
    def versions(self) -> frozenset[int]:
        """Every key version this keyring can open (and index) with."""
        return frozenset(self.keys)

    def seal(self, plaintext: bytes, context: str) -> str:
        """Encrypt ``plaintext`` bound to ``context`` (e.g. ``password:<tenant>:<user>``)."""
        nonce = secrets.token_bytes(NONCE_BYTES)
        sealed = self._encrypt(self.active, nonce, plaintext, context.encode())
        body = base64.urlsafe_b64encode(nonce + sealed).decode("ascii").rstrip("=")
        return f"{SEAL_PREFIX}${self.active}${body}"

    def open(self, value: str, context: str) -> bytes:
        """Decrypt a value from :meth:`seal`.

        Raises:
            SealError: malformed, unknown key version, or wrong key/context/tampered.
        """
        version, raw = _split(value)
        if version not in self.versions:
            raise SealError(f"sealed under key version {version}, which is not in the key store")
        return self._decrypt(version, raw[:NONCE_BYTES], raw[NONCE_BYTES:], context.encode())

    def needs_reseal(self, value: str) -> bool:
        return _split(value)[0] != self.active

    def index(self, value: str, purpose: str, version: int | None = None) -> str:
        """A deterministic keyed index of ``value`` (a blind index), tagged with the version."""
        version = self.active if version is None else version
        digest = self._hmac(version, b"assetbook index " + purpose.encode(), value.encode())
        return f"{version}${digest.hex()}"

    def index_candidates(self, value: str, purpose: str) -> list[str]:
        """:meth:`index` under every version in the key store (for lookups during a rotation)."""
        return [self.index(value, purpose, v) for v in sorted(self.versions)]

    def mac(self, value: bytes, purpose: str) -> str:
        """HMAC-SHA-256 of a high-entropy secret (recovery codes) under the active key."""
        digest = self._hmac(self.active, b"assetbook mac " + purpose.encode(), value)
        return f"{self.active}${digest.hex()}"

    # The primitives: raw keys in memory here, overridden by the PKCS#11 keyring.

    def _encrypt(self, version: int, nonce: bytes, plaintext: bytes, aad: bytes) -> bytes:
        """AES-256-GCM: ciphertext ‖ 16-byte tag."""
        return AESGCM(self._derive(version, b"assetbook seal")).encrypt(nonce, plaintext, aad)

    def _decrypt(self, version: int, nonce: bytes, sealed: bytes, aad: bytes) -> bytes:
        """Raises: SealError (does not authenticate)."""
        try:
            return AESGCM(self._derive(version, b"assetbook seal")).decrypt(nonce, sealed, aad)
        except InvalidTag as exc:
            raise SealError("sealed value does not authenticate") from exc

    def _hmac(self, version: int, info: bytes, message: bytes) -> bytes:
        """HMAC-SHA-256 of ``message`` under the key of ``version`` for the domain ``info``."""
        return hmac.new(self._derive(version, info), message, hashlib.sha256).digest()

    def _derive(self, version: int, info: bytes) -> bytes:
        hkdf = HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None, info=info)
        return hkdf.derive(self.keys[version])


def _split(value: str) -> tuple[int, bytes]:
    parts = value.split("$") if isinstance(value, str) else []
    if len(parts) != 3 or parts[0] != SEAL_PREFIX or not parts[1].isdigit():
        raise SealError("not a sealed value")
    try:
        raw = base64.urlsafe_b64decode(parts[2] + "=" * (-len(parts[2]) % 4))
    except (binascii.Error, ValueError) as exc:
        raise SealError("sealed value is not base64url") from exc
    if len(raw) < NONCE_BYTES + 16:
        raise SealError("sealed value too short")
    return int(parts[1]), raw


def new_key_file(path: Path) -> None:
    """Create a key file with one fresh version (0600, never overwriting an existing file)."""
    data = {"active": 1, "keys": {"1": _b64(secrets.token_bytes(KEY_BYTES))}}
    _write_new(path, data)


def add_key_version(path: Path) -> int:
    """Rotation step 1: add a fresh version and make it active; older ones stay for opening.

    Returns:
        The new version.
    """
    ring = load_keyring(path)
    version = max(ring.keys) + 1
    data = {
        "active": version,
        "keys": {str(v): _b64(k) for v, k in {**ring.keys, version: _new_key()}.items()},
    }
    _replace(path, data)
    return version


def remove_key_version(path: Path, version: int) -> None:
    """Rotation last step: drop a retired version (values still sealed under it stop opening).

    Raises:
        SecretKeyError: ``version`` is the active one or absent.
    """
    ring = load_keyring(path)
    if version == ring.active or version not in ring.keys:
        raise SecretKeyError(f"cannot remove key version {version}", key=str(path))
    keys = {str(v): _b64(k) for v, k in ring.keys.items() if v != version}
    _replace(path, {"active": ring.active, "keys": keys})


def load_keyring(path: Path) -> Keyring:
    """Read and check the key file.

    Raises:
        SecretKeyError: missing, group/other-accessible, not a regular file, or malformed.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as exc:
        raise SecretKeyError(f"cannot open the secrets key: {exc.strerror}", key=str(path)) from exc
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode) or info.st_mode & 0o077:
            raise SecretKeyError("the secrets key must be a regular file, mode 0600", key=str(path))
        raw = handle.read(1 << 16)
    try:
        data = json.loads(raw)
        keys = {int(v): base64.b64decode(k, validate=True) for v, k in data["keys"].items()}
        active = data["active"]
    except (ValueError, KeyError, TypeError, AttributeError, binascii.Error) as exc:
        raise SecretKeyError("the secrets key file is malformed", key=str(path)) from exc
    if not isinstance(active, int) or active not in keys:
        raise SecretKeyError("the active key version is not in the file", key=str(path))
    if any(len(k) != KEY_BYTES for k in keys.values()):
        raise SecretKeyError("every key must be 32 bytes", key=str(path))
    return Keyring(active, keys)


def _new_key() -> bytes:
    return secrets.token_bytes(KEY_BYTES)


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _write_new(path: Path, data: dict[str, object]) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(json.dumps(data).encode())
        handle.flush()
        os.fsync(handle.fileno())


def _replace(path: Path, data: dict[str, object]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    _write_new(tmp, data)
    os.replace(tmp, path)
