"""The secrets key inside a PKCS#11 token: same seals and indexes, no key bytes in our memory.

Selected by ``[secrets] backend = "pkcs11"`` in the core's ``config.toml``
(:class:`cloud.home.SecretsConfig`). Each key version ``N`` is two secret-key objects in the
token, told apart by their labels:

* ``assetbook-seal-vN``: ``CKK_AES``, 256 bits, used with ``CKM_AES_GCM`` for seal/open;
* ``assetbook-index-vN``: ``CKK_GENERIC_SECRET``, 256 bits, used with ``CKM_SHA256_HMAC``
  for blind indexes and MACs.

Both are created by :func:`add_key_version` as token objects with ``CKA_SENSITIVE`` true and
``CKA_EXTRACTABLE`` false, so the token never hands out their value; every seal, open and
HMAC runs inside the token. The active version is the highest one present.

Contract:

* :func:`open_pkcs11_keyring` logs in with the user PIN (read from ``pin_file`` or the
  environment variable ``pin_env``; never from ``config.toml``) and raises
  :class:`~cloud.identity.errors.SecretKeyError` when the module, the token, the PIN or a
  complete key version is missing, so the core refuses to start.
* :class:`Pkcs11Keyring` has the interface of :class:`~cloud.identity.keyring.Keyring` and the
  same ``ab1$<version>$…`` format (AES-256-GCM, 96-bit random nonce, context as associated
  data). Its ``keys`` mapping is empty: there are no raw keys outside the token. Indexes are
  HMAC-SHA-256 over ``len(domain) ‖ domain ‖ value`` under the index key, so index, MAC and
  seal never share a key or a domain. Calls are serialised on one session (a lock), since
  the identity service calls in from worker threads.
* Rotation: :func:`add_key_version` adds version ``max + 1`` (making it active);
  :func:`remove_key_version` destroys a retired one. Re-sealing stored values is
  :func:`cloud.identity.rotation.rewrap`, exactly as with the key file.

The PIN is never logged and never part of an error message.
"""

from __future__ import annotations

import os
import re
import stat
import struct
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, cast

import pkcs11
from pkcs11 import Attribute, KeyType, Mechanism, MechanismFlag, ObjectClass
from pkcs11.exceptions import PKCS11Error, UserAlreadyLoggedIn
from pkcs11.mechanisms import GCMParams

from cloud.identity.errors import SealError, SecretKeyError
from cloud.identity.keyring import KEY_BYTES, Keyring

if TYPE_CHECKING:
    from pkcs11._pkcs11 import lib as Pkcs11Lib

    from cloud.home import SecretsConfig

SEAL_LABEL = "assetbook-seal-v{}"
INDEX_LABEL = "assetbook-index-v{}"
_LABEL = re.compile(r"assetbook-(seal|index)-v([1-9][0-9]{0,8})")
_TAG_BITS = 128
_PIN_MAX_BYTES = 256

_libraries: dict[str, Pkcs11Lib] = {}
_libraries_lock = threading.Lock()


class TokenKey(Protocol):
    """The operations we use on a secret-key object (python-pkcs11 mixes them in at run time)."""

    def encrypt(self, data: bytes, **kwargs: Any) -> bytes: ...
    def decrypt(self, data: bytes, **kwargs: Any) -> bytes: ...
    def sign(self, data: bytes, **kwargs: Any) -> bytes: ...
    def destroy(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Pkcs11Keyring(Keyring):
    """A keyring whose keys stay in a PKCS#11 token (``keys`` is always empty)."""

    session: pkcs11.Session = field(repr=False)
    seal_keys: dict[int, TokenKey] = field(repr=False)
    index_keys: dict[int, TokenKey] = field(repr=False)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def versions(self) -> frozenset[int]:
        return frozenset(self.seal_keys)

    def close(self) -> None:
        """Log out and close the session (the keyring is unusable afterwards)."""
        with self.lock:
            self.session.close()

    def _encrypt(self, version: int, nonce: bytes, plaintext: bytes, aad: bytes) -> bytes:
        params = GCMParams(nonce, aad, _TAG_BITS)
        with self.lock:
            return self.seal_keys[version].encrypt(
                plaintext, mechanism=Mechanism.AES_GCM, mechanism_param=params
            )

    def _decrypt(self, version: int, nonce: bytes, sealed: bytes, aad: bytes) -> bytes:
        params = GCMParams(nonce, aad, _TAG_BITS)
        try:
            with self.lock:
                return self.seal_keys[version].decrypt(
                    sealed, mechanism=Mechanism.AES_GCM, mechanism_param=params
                )
        except PKCS11Error as exc:
            raise SealError("sealed value does not authenticate") from exc

    def _hmac(self, version: int, info: bytes, message: bytes) -> bytes:
        data = struct.pack(">H", len(info)) + info + message
        with self.lock:
            return self.index_keys[version].sign(data, mechanism=Mechanism.SHA256_HMAC)


def open_pkcs11_keyring(config: SecretsConfig) -> Pkcs11Keyring:
    """Log in to the configured token and find every complete key version.

    Raises:
        SecretKeyError: no module, token, PIN, login, or no complete key version.
    """
    session = _open_session(config, rw=False)
    try:
        seal_keys, index_keys = _find_versions(session, config)
        if not seal_keys:
            raise SecretKeyError(
                f"token {config.token_label!r} holds no secrets key "
                "(create one: cloud.identity.pkcs11_keyring.add_key_version)",
                key="secrets.token_label",
            )
        return Pkcs11Keyring(max(seal_keys), {}, session, seal_keys, index_keys)
    except BaseException:
        session.close()
        raise


def add_key_version(config: SecretsConfig) -> int:
    """Create a fresh key version in the token (the first one, or a rotation step 1).

    Returns:
        The new version, which is now the active one.

    Raises:
        SecretKeyError: the token cannot be opened or the keys cannot be created.
    """
    session = _open_session(config, rw=True)
    try:
        seal_keys, _ = _find_versions(session, config)
        version = max(seal_keys, default=0) + 1
        common = {Attribute.SENSITIVE: True, Attribute.EXTRACTABLE: False}
        try:
            session.generate_key(
                KeyType.AES,
                KEY_BYTES * 8,
                label=SEAL_LABEL.format(version),
                store=True,
                capabilities=MechanismFlag.ENCRYPT | MechanismFlag.DECRYPT,
                template={**common, Attribute.PRIVATE: True},
            )
            session.generate_key(
                KeyType.GENERIC_SECRET,
                KEY_BYTES * 8,
                label=INDEX_LABEL.format(version),
                store=True,
                capabilities=MechanismFlag.SIGN | MechanismFlag.VERIFY,
                template={**common, Attribute.PRIVATE: True},
            )
        except PKCS11Error as exc:
            raise SecretKeyError(
                f"cannot create key version {version} in the token: {type(exc).__name__}",
                key="secrets.token_label",
            ) from exc
        return version
    finally:
        session.close()


def remove_key_version(config: SecretsConfig, version: int) -> None:
    """Rotation last step: destroy a retired version's keys in the token.

    Raises:
        SecretKeyError: ``version`` is the active one or absent, or the token refuses.
    """
    session = _open_session(config, rw=True)
    try:
        seal_keys, index_keys = _find_versions(session, config)
        if version not in seal_keys or version == max(seal_keys):
            raise SecretKeyError(f"cannot remove key version {version}", key="secrets")
        try:
            seal_keys[version].destroy()
            index_keys[version].destroy()
        except PKCS11Error as exc:
            raise SecretKeyError(
                f"the token refused to destroy key version {version}: {type(exc).__name__}",
                key="secrets.token_label",
            ) from exc
    finally:
        session.close()


def release_module(module: str) -> None:
    """Finalize a loaded PKCS#11 module (orderly shutdown; tests switching tokens)."""
    with _libraries_lock:
        lib = _libraries.pop(module, None)
    if lib is not None:
        lib.finalize()


def read_pin(config: SecretsConfig) -> str:
    """The user PIN from ``pin_file`` (mode 0600, first line) or the ``pin_env`` variable.

    Raises:
        SecretKeyError: neither is usable (the message never contains the PIN).
    """
    if config.pin_env is not None:
        pin = os.environ.get(config.pin_env)
        if not pin:
            raise SecretKeyError(
                f"the PIN variable {config.pin_env} is not set", key="secrets.pin_env"
            )
        return pin
    if config.pin_file is None:
        raise SecretKeyError("no PIN source configured", key="secrets.pin_file")
    path = Path(config.pin_file)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as exc:
        raise SecretKeyError(
            f"cannot open the PIN file: {exc.strerror}", key="secrets.pin_file"
        ) from exc
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode) or info.st_mode & 0o077:
            raise SecretKeyError(
                "the PIN file must be a regular file, mode 0600", key="secrets.pin_file"
            )
        raw = handle.read(_PIN_MAX_BYTES + 1)
    lines = raw.decode("utf-8", errors="strict").splitlines() if raw else []
    if not lines or not lines[0] or len(raw) > _PIN_MAX_BYTES:
        raise SecretKeyError("the PIN file is empty or too long", key="secrets.pin_file")
    return lines[0]


def _library(module: str) -> Pkcs11Lib:
    # A module can be initialised once per process; every keyring shares the one handle.
    with _libraries_lock:
        lib = _libraries.get(module)
        if lib is None:
            if not Path(module).is_file():
                raise SecretKeyError(
                    f"PKCS#11 module {module} does not exist", key="secrets.pkcs11_module"
                )
            try:
                lib = pkcs11.lib(module)
            except PKCS11Error as exc:
                raise SecretKeyError(
                    f"cannot load PKCS#11 module {module}: {exc}", key="secrets.pkcs11_module"
                ) from exc
            _libraries[module] = lib
        return lib


def _open_session(config: SecretsConfig, *, rw: bool) -> pkcs11.Session:
    if config.pkcs11_module is None or config.token_label is None:
        raise SecretKeyError("pkcs11_module and token_label are required", key="secrets")
    pin = read_pin(config)
    lib = _library(config.pkcs11_module)
    try:
        token: pkcs11.Token = lib.get_token(token_label=config.token_label)
    except PKCS11Error as exc:
        raise SecretKeyError(
            f"no PKCS#11 token labelled {config.token_label!r} ({type(exc).__name__})",
            key="secrets.token_label",
        ) from exc
    try:
        try:
            return token.open(rw=rw, user_pin=pin)
        except UserAlreadyLoggedIn:
            # Login state is per process: another session of ours (a keyring) holds it.
            return token.open(rw=rw)
    except PKCS11Error as exc:
        # The exception text is the return-value name only; the PIN is not in it.
        raise SecretKeyError(
            f"cannot log in to token {config.token_label!r} ({type(exc).__name__})",
            key="secrets.token_label",
        ) from exc


def _find_versions(
    session: pkcs11.Session, config: SecretsConfig
) -> tuple[dict[int, TokenKey], dict[int, TokenKey]]:
    found: dict[str, dict[int, TokenKey]] = {"seal": {}, "index": {}}
    for obj in session.get_objects({Attribute.CLASS: ObjectClass.SECRET_KEY}):
        if not isinstance(obj, pkcs11.SecretKey):
            continue
        match = _LABEL.fullmatch(obj.label)
        if match:
            found[match.group(1)][int(match.group(2))] = cast("TokenKey", obj)
    seal, index = found["seal"], found["index"]
    if set(seal) != set(index):
        missing = sorted(set(seal) ^ set(index))
        raise SecretKeyError(
            f"token {config.token_label!r} has incomplete key versions {missing}",
            key="secrets.token_label",
        )
    return seal, index
