"""The gateway's device key inside a PKCS#11 token (a TPM or secure element's module).

Selected by ``[device_key] backend = "pkcs11"`` in ``gateway.toml``
(:class:`gateway.config.DeviceKeyConfig`). The key is one Ed25519 key pair in the token,
both halves labelled :data:`KEY_LABEL` (``assetbook-device-key``):

* the private key is a token object with ``CKA_SENSITIVE`` true and ``CKA_EXTRACTABLE``
  false, made by ``CKM_EC_EDWARDS_KEY_PAIR_GEN`` inside the token, so its value never
  leaves it; DPoP proofs are signed with ``CKM_EDDSA`` inside the token;
* the public key's ``CKA_EC_POINT`` is read to build the JWK (RFC 8037), so the thumbprint
  the core binds credentials to is the same on every start.

Contract:

* :meth:`Pkcs11KeyStore.load_or_create` logs in with the user PIN (``pin_file``, mode 0600,
  or the environment variable ``pin_env``; never from ``gateway.toml``), finds the key pair
  or creates it on first use, and returns a :class:`~cloud.fleet.dpop.Signer`. A missing
  module, token, PIN or login, a half-present key pair, or a token without Ed25519 raises
  :class:`~gateway.device_key.DeviceKeyError`, so the gateway refuses to start.
* Loading the module, finding the token and reading the PIN are the core's PKCS#11 helpers
  (:mod:`cloud.identity.pkcs11_keyring`); their errors are translated here.
* The signer keeps one session open; signing calls are serialised on a lock.

The PIN is never logged and never part of an error message.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, Protocol, cast

from cryptography.hazmat.primitives.asymmetric import ed25519
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
from pkcs11.exceptions import PKCS11Error
from pkcs11.util.ec import encode_named_curve_parameters

from cloud.fleet.dpop import public_jwk, thumbprint
from cloud.home import SecretsConfig
from cloud.identity.errors import SecretKeyError
from cloud.identity.pkcs11_keyring import _open_session
from gateway.device_key import DeviceKeyError

if TYPE_CHECKING:
    import pkcs11

    from cloud.fleet.dpop import Signer
    from gateway.config import DeviceKeyConfig

#: The label of both halves of the device key pair in the token.
KEY_LABEL = "assetbook-device-key"
#: RFC 8410 object identifier of Ed25519, the curve in ``CKA_EC_PARAMS``.
ED25519_OID = "1.3.101.112"
_RAW_KEY_BYTES = 32


class _TokenPrivateKey(Protocol):
    """The operation we use on a private-key object (mixed in by python-pkcs11 at run time)."""

    def sign(self, data: bytes, **kwargs: Any) -> bytes: ...


class _TokenSigner:
    """Signs inside the token; holds the session open until :meth:`close`."""

    def __init__(
        self, session: pkcs11.Session, private: _TokenPrivateKey, public: ed25519.Ed25519PublicKey
    ) -> None:
        self._session = session
        self._private = private
        self._jwk = public_jwk(public)
        self._lock = threading.Lock()

    def public_jwk(self) -> dict[str, str]:
        return dict(self._jwk)

    def sign(self, data: bytes) -> bytes:
        try:
            with self._lock:
                return self._private.sign(data, mechanism=Mechanism.EDDSA)
        except PKCS11Error as exc:
            raise DeviceKeyError(f"the token refused to sign: {type(exc).__name__}") from exc

    def close(self) -> None:
        """Close the session (the signer is unusable afterwards)."""
        with self._lock:
            self._session.close()

    def __repr__(self) -> str:
        return f"<device key in token {thumbprint(self._jwk)}>"


class Pkcs11KeyStore:
    """An Ed25519 device key that lives in a PKCS#11 token."""

    def __init__(self, config: DeviceKeyConfig) -> None:
        if config.pkcs11_module is None or config.token_label is None:
            raise DeviceKeyError("device_key: pkcs11_module and token_label are required")
        self.config = config

    def load_or_create(self) -> Signer:
        secrets = SecretsConfig(
            "pkcs11",
            str(self.config.pkcs11_module),
            self.config.token_label,
            str(self.config.pin_file) if self.config.pin_file is not None else None,
            self.config.pin_env,
        )
        try:
            session = _open_session(secrets, rw=True)
        except SecretKeyError as exc:
            # The core's messages name the module, token or PIN source, never the PIN.
            raise DeviceKeyError(f"device_key: {exc}") from exc
        try:
            found = self._find(session)
            private, public = found if found is not None else self._generate(session)
            return _TokenSigner(session, private, public)
        except BaseException:
            session.close()
            raise

    def _find(
        self, session: pkcs11.Session
    ) -> tuple[_TokenPrivateKey, ed25519.Ed25519PublicKey] | None:
        def objects(kind: ObjectClass) -> list[Any]:
            query = {Attribute.CLASS: kind, Attribute.LABEL: KEY_LABEL}
            return list(session.get_objects(query))

        try:
            privates = objects(ObjectClass.PRIVATE_KEY)
            publics = objects(ObjectClass.PUBLIC_KEY)
        except PKCS11Error as exc:
            raise DeviceKeyError(f"cannot search the token: {type(exc).__name__}") from exc
        if not privates and not publics:
            return None
        if len(privates) != 1 or len(publics) != 1:
            raise DeviceKeyError(
                f"token {self.config.token_label!r} holds {len(privates)} private and "
                f"{len(publics)} public objects labelled {KEY_LABEL!r}; expected one of each"
            )
        return cast("_TokenPrivateKey", privates[0]), _public_key(publics[0])

    def _generate(
        self, session: pkcs11.Session
    ) -> tuple[_TokenPrivateKey, ed25519.Ed25519PublicKey]:
        try:
            params = session.create_domain_parameters(
                KeyType.EC_EDWARDS,
                {Attribute.EC_PARAMS: encode_named_curve_parameters(ED25519_OID)},
                local=True,
            )
            public, private = params.generate_keypair(
                mechanism=Mechanism.EC_EDWARDS_KEY_PAIR_GEN,
                store=True,
                label=KEY_LABEL,
                private_template={
                    Attribute.SENSITIVE: True,
                    Attribute.EXTRACTABLE: False,
                    Attribute.PRIVATE: True,
                },
            )
        except PKCS11Error as exc:
            raise DeviceKeyError(
                f"token {self.config.token_label!r} cannot create an Ed25519 key: "
                f"{type(exc).__name__}"
            ) from exc
        return cast("_TokenPrivateKey", private), _public_key(public)


def _public_key(obj: Any) -> ed25519.Ed25519PublicKey:
    """The Ed25519 public key from ``CKA_EC_POINT`` (DER OCTET STRING, or raw 32 bytes)."""
    try:
        point = bytes(obj[Attribute.EC_POINT])
    except PKCS11Error as exc:
        raise DeviceKeyError(f"cannot read the public key: {type(exc).__name__}") from exc
    if len(point) == _RAW_KEY_BYTES + 2 and point[:2] == bytes([0x04, _RAW_KEY_BYTES]):
        point = point[2:]
    if len(point) != _RAW_KEY_BYTES:
        raise DeviceKeyError(f"the token's {KEY_LABEL!r} is not an Ed25519 public key")
    return ed25519.Ed25519PublicKey.from_public_bytes(point)
