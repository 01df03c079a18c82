"""The gateway's device key: an Ed25519 key made on the gateway that never leaves it.

:class:`DeviceKeyStore` is the interface: find or create the key, and hand out a
:class:`~cloud.fleet.dpop.Signer` that signs without exposing the private half. The core
binds the gateway's credentials to the key's thumbprint, so a copied token is useless
without it.

:class:`FileKeyStore` keeps the key as PKCS#8 PEM in a file of mode 0600 (readable only by
the service's user), created whole or not at all, and refuses to use a file that others can
read. :class:`gateway.device_key_pkcs11.Pkcs11KeyStore` implements the same interface with
a key pair inside a PKCS#11 token (a TPM or secure element through its module).

:func:`open_key_store` picks the store from the ``[device_key]`` section
(:class:`gateway.config.DeviceKeyConfig`): the file store unless ``backend = "pkcs11"``.
python-pkcs11 is imported only when the PKCS#11 store is chosen, and cryptography and
PyJWT only when a key is loaded or made: a gateway that is not enrolled never loads them.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from typing import TYPE_CHECKING, Protocol

from gateway.errors import GatewayError

if TYPE_CHECKING:
    from pathlib import Path

    from cryptography.hazmat.primitives.asymmetric import ed25519

    from cloud.fleet.dpop import Signer
    from gateway.config import DeviceKeyConfig


class DeviceKeyError(GatewayError):
    """The device key cannot be created or used safely."""


class DeviceKeyStore(Protocol):
    def load_or_create(self) -> Signer:
        """The device key, created on first use. Raises: DeviceKeyError."""
        ...


def open_key_store(config: DeviceKeyConfig | None, key_file: Path) -> DeviceKeyStore:
    """The configured store: a PKCS#11 token, or else the file ``key_file``.

    Raises:
        DeviceKeyError: the PKCS#11 settings are incomplete.
    """
    if config is None or config.backend == "file":
        return FileKeyStore(key_file)
    if config.backend != "pkcs11":
        raise DeviceKeyError(f"unknown device key backend {config.backend!r}")
    # Imported here so that a gateway using the file store does not need python-pkcs11.
    from gateway.device_key_pkcs11 import Pkcs11KeyStore

    return Pkcs11KeyStore(config)


class _FileSigner:
    def __init__(self, key: ed25519.Ed25519PrivateKey) -> None:
        self._key = key

    def public_jwk(self) -> dict[str, str]:
        from cloud.fleet.dpop import public_jwk

        return public_jwk(self._key.public_key())

    def sign(self, data: bytes) -> bytes:
        return self._key.sign(data)

    def __repr__(self) -> str:
        from cloud.fleet.dpop import thumbprint

        return f"<device key {thumbprint(self.public_jwk())}>"


class FileKeyStore:
    """An Ed25519 key in a 0600 PEM file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load_or_create(self) -> Signer:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519

        if not self.path.exists():
            self._create()
        mode = self.path.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise DeviceKeyError(
                f"{self.path} can be read by other users; run: chmod 600 {self.path}"
            )
        try:
            key = serialization.load_pem_private_key(self.path.read_bytes(), password=None)
        except (OSError, ValueError) as exc:
            raise DeviceKeyError(f"cannot read the device key {self.path}: {exc}") from exc
        if not isinstance(key, ed25519.Ed25519PrivateKey):
            raise DeviceKeyError(f"{self.path} is not an Ed25519 key")
        return _FileSigner(key)

    def _create(self) -> None:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519

        pem = ed25519.Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        # Written whole to a private temporary file, then hard-linked into place: link(2)
        # fails if the name exists, and a crash never leaves an empty or partial key.
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".device-key-")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(pem)
                out.flush()
                os.fsync(out.fileno())
            with contextlib.suppress(FileExistsError):  # another process made one first
                os.link(tmp, self.path)
        finally:
            os.unlink(tmp)
