"""JWT issuing and verification for every credential the core hands out.

Contract (RFC 8725, "JWT Best Current Practices"):

* One algorithm only: EdDSA with Ed25519 keys (§3.1). The header's ``alg`` must be exactly
  ``"EdDSA"`` before any key is looked up, so ``alg=none`` and HS256 signed with the public
  key as an HMAC secret are refused without reaching a verifier.
* Only the ``alg``, ``typ`` and ``kid`` header parameters are accepted: ``jku``, ``x5u``,
  ``jwk``, ``x5c`` and ``crit`` are refused, so no key is ever taken from the token (§3.10).
* Explicit typing per audience (§3.11) and one audience per relying party (§3.9): a link token
  is refused by REST and vice versa, by both ``aud`` and ``typ``.
* ``exp`` is required (a token without it is refused); ``nbf`` and ``iat`` are checked with a
  small leeway; ``iss`` must be this core's issuer. The clock is injectable.
* Keys are rotated with :func:`rotate_signing_key`; older keys keep verifying until their
  files are removed (:func:`remove_signing_key`).

Not done here: revocation. Whether a ``jti`` is still active is the registry's business
(:mod:`cloud.registry`); :meth:`TokenIssuer.verify` takes an ``is_active`` callback so callers
can apply it in the same call. Nothing here logs; callers log ``AuthError.code``.
"""

from __future__ import annotations

import base64
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from cloud import pki
from cloud.errors import AuthCode, AuthError, ConfigError, Conflict, InvalidInput, NotFound
from cloud.home import CoreHome, add_signing_key, load_config, read_active_kid
from cloud.principal import Principal, PrincipalKind, valid_pattern

if TYPE_CHECKING:
    from pathlib import Path

ALGORITHM = "EdDSA"
LEEWAY_S = 30
# A token is a header line on every request; anything this large is not ours (DoS guard).
MAX_TOKEN_BYTES = 8192
_ALLOWED_HEADER = frozenset({"alg", "typ", "kid"})
_REQUIRED_CLAIMS = ("iss", "sub", "aud", "exp", "iat", "nbf", "jti", "tenant", "kind")


class Audience(StrEnum):
    """The relying parties inside the core; each accepts only its own tokens."""

    LINK = "assetbook:link"
    REST = "assetbook:rest"
    MQTT = "assetbook:mqtt"


TOKEN_TYPES: dict[Audience, str] = {
    Audience.LINK: "ab-link+jwt",
    Audience.REST: "ab-rest+jwt",
    Audience.MQTT: "ab-mqtt+jwt",
}

Clock = Callable[[], float]


class TokenIssuer:
    """Signs tokens with the active key and verifies them against every key in the home.

    Args:
        home: the core home (reads ``config.toml`` and ``keys/``).
        now: wall clock in seconds since the epoch (injectable for tests).
        leeway_s: tolerance for ``exp``, ``nbf`` and ``iat`` against clock skew.

    Raises:
        ConfigError: the config, the key files or the active key are unusable.
    """

    def __init__(self, home: CoreHome, *, now: Clock = time.time, leeway_s: int = LEEWAY_S):
        self._home = home
        self._now = now
        self._leeway = leeway_s
        self.issuer = load_config(home).issuer
        self._keys: dict[str, ed25519.Ed25519PrivateKey] = {}
        self.active_kid = ""
        self.reload()

    def reload(self) -> None:
        """Re-read the key files (after a rotation or a removal)."""
        keys = {kid: _load_key(kid, path) for kid, path in self._home.signing_keys().items()}
        active = read_active_kid(self._home)
        self._keys, self.active_kid = keys, active

    def issue(
        self,
        *,
        audience: Audience,
        subject: str,
        tenant: str,
        kind: PrincipalKind,
        lifetime_s: int,
        publish: Sequence[str] = (),
        subscribe: Sequence[str] = (),
        scopes: Sequence[str] = (),
        confirmation: str | None = None,
    ) -> tuple[str, dict[str, Any]]:
        """Sign a new token; ``confirmation`` binds it to a key thumbprint (``cnf.jkt``).

        Returns:
            ``(token, claims)``; store ``claims["jti"]`` (never the token) to allow revocation.

        Raises:
            InvalidInput: empty subject or tenant, non-positive lifetime, bad topic pattern.
        """
        _check_issue_args(subject, tenant, lifetime_s, publish, subscribe)
        now = int(self._now())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": subject,
            "aud": audience.value,
            "iat": now,
            "nbf": now,
            "exp": now + lifetime_s,
            "jti": secrets.token_hex(16),  # 128 random bits: unguessable and collision-free
            "tenant": tenant,
            "kind": kind.value,
            "pub": list(publish),
            "sub_topics": list(subscribe),
            "scope": list(scopes),
        }
        if confirmation is not None:  # RFC 7800 §3.1 / RFC 9449 §6.1: proof of possession
            claims["cnf"] = {"jkt": confirmation}
        headers = {"kid": self.active_kid, "typ": TOKEN_TYPES[audience]}
        token = jwt.encode(claims, self._keys[self.active_kid], ALGORITHM, headers=headers)
        return token, claims

    def verify(
        self,
        token: str | None,
        audience: Audience,
        *,
        is_active: Callable[[str], bool] | None = None,
    ) -> Principal:
        """Check ``token`` for ``audience`` and return who presented it.

        Args:
            token: the compact JWT (``None`` or empty means none was presented).
            audience: the relying party doing the check.
            is_active: optional revocation check on the ``jti`` (e.g. the registry's).

        Raises:
            AuthError: with the precise :class:`~cloud.errors.AuthCode`.
        """
        if not token:
            raise AuthError(AuthCode.MISSING)
        if len(token) > MAX_TOKEN_BYTES:
            raise AuthError(AuthCode.MALFORMED, "token too large")
        key = self._key_for(_checked_header(token, audience))
        claims = self._decode(token, key, audience)
        self._check_times(claims)
        principal = _principal(claims)
        if is_active is not None and not is_active(principal.token_id):
            raise AuthError(AuthCode.REVOKED, f"jti {principal.token_id}")
        return principal

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        """Every verification key as a JWK Set (RFC 7517 §5; OKP keys per RFC 8037 §2)."""
        return {"keys": [_jwk(kid, key.public_key()) for kid, key in self._keys.items()]}

    def _key_for(self, header: Mapping[str, Any]) -> ed25519.Ed25519PublicKey:
        kid = header.get("kid")
        if not isinstance(kid, str) or kid not in self._keys:
            raise AuthError(AuthCode.UNKNOWN_KEY, "kid not among the core's keys")
        return self._keys[kid].public_key()

    def _decode(
        self, token: str, key: ed25519.Ed25519PublicKey, audience: Audience
    ) -> dict[str, Any]:
        # PyJWT checks signature, aud, iss and presence; time claims are checked against our
        # injectable clock in _check_times, so PyJWT's own clock checks are switched off.
        options: Any = {
            "require": list(_REQUIRED_CLAIMS),
            "verify_exp": False,
            "verify_nbf": False,
            "verify_iat": False,
        }
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                audience=audience.value,
                issuer=self.issuer,
                options=options,
            )
        except jwt.InvalidAudienceError as exc:
            raise AuthError(AuthCode.WRONG_AUDIENCE, str(exc)) from exc
        except jwt.InvalidIssuerError as exc:
            raise AuthError(AuthCode.WRONG_ISSUER, str(exc)) from exc
        except jwt.InvalidSignatureError as exc:
            raise AuthError(AuthCode.INVALID, "bad signature") from exc
        except jwt.InvalidTokenError as exc:
            raise AuthError(AuthCode.INVALID, str(exc)) from exc
        return claims

    def _check_times(self, claims: Mapping[str, Any]) -> None:
        now = self._now()
        exp, nbf, iat = (_numeric_date(claims, name) for name in ("exp", "nbf", "iat"))
        if now > exp + self._leeway:
            raise AuthError(AuthCode.EXPIRED)
        if now + self._leeway < nbf:
            raise AuthError(AuthCode.NOT_YET_VALID, "nbf in the future")
        if now + self._leeway < iat:
            raise AuthError(AuthCode.NOT_YET_VALID, "iat in the future")


def confirmation_of(token: str) -> str | None:
    """The ``cnf.jkt`` of a token that :meth:`TokenIssuer.verify` has already accepted."""
    cnf = jwt.decode(token, options={"verify_signature": False}).get("cnf")
    jkt = cnf.get("jkt") if isinstance(cnf, dict) else None
    return jkt if isinstance(jkt, str) else None


def rotate_signing_key(home: CoreHome) -> str:
    """Create a new signing key and make it active; older keys keep verifying.

    Running issuers pick the new key up on :meth:`TokenIssuer.reload`.

    Returns:
        The new kid.
    """
    kid, pem = pki.new_signing_key()
    add_signing_key(home, kid, pem)
    return kid


def remove_signing_key(home: CoreHome, kid: str) -> None:
    """Delete an old signing key: tokens it signed stop verifying (after ``reload``).

    Raises:
        Conflict: ``kid`` is the active key.
        NotFound: no such key.
    """
    if kid == read_active_kid(home):
        raise Conflict("the active signing key cannot be removed; rotate first")
    path = home.signing_key(kid)
    if not path.is_file():
        raise NotFound(f"no signing key {kid}")
    path.unlink()


def _load_key(kid: str, path: Path) -> ed25519.Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise ConfigError(f"cannot load signing key: {exc}", key=f"keys/{path.name}") from exc
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise ConfigError("signing keys must be Ed25519", key=f"keys/{path.name}")
    if pki.key_id(key.public_key()) != kid:
        # The file name is the kid; a mismatch means the file was swapped or corrupted.
        raise ConfigError("key file does not match its kid", key=f"keys/{path.name}")
    return key


def _checked_header(token: str, audience: Audience) -> dict[str, Any]:
    try:
        header = jwt.get_unverified_header(token)
    except jwt.InvalidTokenError as exc:
        raise AuthError(AuthCode.MALFORMED, str(exc)) from exc
    if header.get("alg") != ALGORITHM:
        raise AuthError(AuthCode.ALGORITHM_REFUSED, f"alg {header.get('alg')!r}")
    extra = set(header) - _ALLOWED_HEADER
    if extra:
        raise AuthError(AuthCode.INVALID, f"header parameters {sorted(extra)} refused")
    if header.get("typ") != TOKEN_TYPES[audience]:
        raise AuthError(AuthCode.WRONG_TYPE, f"typ {header.get('typ')!r}")
    return header


def _numeric_date(claims: Mapping[str, Any], name: str) -> float:
    value = claims[name]
    # RFC 7519 §2 NumericDate; bool is an int subclass and is not a date.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise AuthError(AuthCode.INVALID, f"{name} is not a NumericDate")
    return float(value)


def _str_list(claims: Mapping[str, Any], name: str) -> tuple[str, ...]:
    value = claims.get(name, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise AuthError(AuthCode.INVALID, f"{name} is not a list of strings")
    return tuple(value)


def _principal(claims: Mapping[str, Any]) -> Principal:
    try:
        kind = PrincipalKind(claims["kind"])
    except ValueError as exc:
        raise AuthError(AuthCode.INVALID, "unknown kind") from exc
    tenant, subject, jti = claims["tenant"], claims["sub"], claims["jti"]
    if not all(isinstance(v, str) and v for v in (tenant, subject, jti)):
        raise AuthError(AuthCode.INVALID, "tenant, sub and jti must be strings")
    return Principal(
        kind=kind,
        id=subject,
        tenant=tenant,
        token_id=jti,
        publish=_str_list(claims, "pub"),
        subscribe=_str_list(claims, "sub_topics"),
        scopes=_str_list(claims, "scope"),
    )


def _check_issue_args(
    subject: str,
    tenant: str,
    lifetime_s: int,
    publish: Sequence[str],
    subscribe: Sequence[str],
) -> None:
    if not subject or not tenant:
        raise InvalidInput("subject and tenant are required")
    if lifetime_s <= 0:
        raise InvalidInput("lifetime must be positive")  # verify() refuses tokens without exp
    for pattern in (*publish, *subscribe):
        if not valid_pattern(pattern):
            raise InvalidInput(f"invalid topic pattern {pattern!r}")


def _jwk(kid: str, public_key: ed25519.Ed25519PublicKey) -> dict[str, str]:
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    x = base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")
    return {"kty": "OKP", "crv": "Ed25519", "x": x, "kid": kid, "alg": ALGORITHM, "use": "sig"}
