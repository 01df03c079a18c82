"""DPoP proofs of possession (RFC 9449) with Ed25519 keys, and JWK thumbprints (RFC 7638).

A gateway proves it holds its device key by signing a short JWT for each request: the link
handshake (``htm`` ``GET``, ``htu`` the link URL) and the enrolment call (``POST``). Tokens the
core issues to an enrolled gateway carry ``cnf.jkt`` (RFC 9449 §6.1, RFC 7800 §3.1), the
thumbprint of that key; a copied token without the key cannot produce a matching proof.

Contract:

* :func:`make_proof` and :func:`verify_proof` are pure: the time, the ``jti`` and the key are
  arguments; nothing reads a clock or draws randomness.
* :func:`verify_proof` returns the proof's key thumbprint or raises :class:`ProofError` with a
  reason that is safe to send to the peer. It checks (RFC 9449 §4.3): ``typ`` ``dpop+jwt``,
  ``alg`` EdDSA only, an Ed25519 public ``jwk`` in the header and no private part, the
  signature, ``htm`` and ``htu`` (compared without query and fragment), ``iat`` inside a short
  window, ``ath`` when an access token is presented, and ``jti`` not seen before
  (:class:`ReplayCache`).

Not done here: server-provided nonces (RFC 9449 §8); a gateway whose clock is more than
:data:`MAX_AGE_S` off cannot prove possession until its clock is set.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections import OrderedDict
from typing import Any, Final, Protocol
from urllib.parse import urlsplit, urlunsplit

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

PROOF_TYPE: Final = "dpop+jwt"
ALGORITHM: Final = "EdDSA"
#: A proof older than this is refused (RFC 9449 §11.1 asks for a short window).
MAX_AGE_S: Final = 60
#: Clock skew tolerated for a proof that seems to come from the future.
MAX_SKEW_S: Final = 10
MAX_PROOF_BYTES: Final = 4096
#: jti values remembered; at least the proofs of one MAX_AGE_S window on a busy core.
REPLAY_CACHE_SIZE: Final = 100_000


class ProofError(Exception):
    """A DPoP proof was refused; ``str(exc)`` is safe to send to the peer."""


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def public_jwk(key: ed25519.Ed25519PublicKey) -> dict[str, str]:
    """The public key as an OKP JWK (RFC 8037 §2)."""
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return {"kty": "OKP", "crv": "Ed25519", "x": b64url(raw)}


def thumbprint(jwk: dict[str, str]) -> str:
    """RFC 7638 §3 thumbprint: SHA-256 of the required members in lexicographic order."""
    required = {"crv": jwk["crv"], "kty": jwk["kty"], "x": jwk["x"]}
    canonical = json.dumps(required, separators=(",", ":"), sort_keys=True)
    return b64url(hashlib.sha256(canonical.encode("utf-8")).digest())


def token_hash(token: str) -> str:
    """``ath``: base64url SHA-256 of the access token's ASCII (RFC 9449 §4.2)."""
    return b64url(hashlib.sha256(token.encode("ascii")).digest())


class Signer(Protocol):
    """A device key that can sign without showing its private half (file or PKCS#11 token)."""

    def public_jwk(self) -> dict[str, str]: ...

    def sign(self, data: bytes) -> bytes: ...


def make_proof(
    signer: Signer,
    *,
    method: str,
    url: str,
    now: int,
    jti: str,
    token: str | None = None,
) -> str:
    """A DPoP proof (compact JWS, RFC 7515 §7.1) for one request; ``jti`` must be fresh
    randomness from the caller."""
    claims: dict[str, Any] = {"jti": jti, "htm": method, "htu": _normal_url(url), "iat": now}
    if token is not None:
        claims["ath"] = token_hash(token)
    header = {"typ": PROOF_TYPE, "alg": ALGORITHM, "jwk": signer.public_jwk()}
    signing_input = f"{_b64json(header)}.{_b64json(claims)}"
    return f"{signing_input}.{b64url(signer.sign(signing_input.encode('ascii')))}"


def _b64json(value: dict[str, Any]) -> str:
    return b64url(json.dumps(value, separators=(",", ":")).encode("utf-8"))


class ReplayCache:
    """Remembers proof ids until they are too old to be accepted anyway."""

    def __init__(self, size: int = REPLAY_CACHE_SIZE) -> None:
        self._size = size
        self._seen: OrderedDict[str, float] = OrderedDict()

    def check_and_add(self, key: str, now: float) -> bool:
        """True if ``key`` is new (and remember it), False if it was seen."""
        while self._seen:
            oldest, expiry = next(iter(self._seen.items()))
            if expiry >= now and len(self._seen) < self._size:
                break
            del self._seen[oldest]
        if key in self._seen:
            return False
        self._seen[key] = now + MAX_AGE_S + MAX_SKEW_S
        return True


def verify_proof(
    proof: str,
    *,
    method: str,
    url: str,
    now: float,
    replay: ReplayCache,
    token: str | None = None,
) -> str:
    """Check a DPoP proof; return the thumbprint of the key that signed it.

    Raises:
        ProofError: any check failed.
    """
    if not proof or len(proof) > MAX_PROOF_BYTES:
        raise ProofError("DPoP proof missing or too large")
    header = _header(proof)
    jwk = header["jwk"]
    key = _public_key(jwk)
    try:
        claims: dict[str, Any] = jwt.decode(
            proof,
            key,
            algorithms=[ALGORITHM],
            options={"require": ["jti", "htm", "htu", "iat"], "verify_iat": False},
        )
    except jwt.InvalidTokenError as exc:
        raise ProofError("DPoP proof signature or claims invalid") from exc
    _check_claims(claims, method=method, url=url, now=now, token=token)
    jkt = thumbprint(jwk)
    if not replay.check_and_add(f"{jkt}:{claims['jti']}", now):
        raise ProofError("DPoP proof replayed")
    return jkt


def _header(proof: str) -> dict[str, Any]:
    try:
        header = jwt.get_unverified_header(proof)
    except jwt.InvalidTokenError as exc:
        raise ProofError("DPoP proof is not a JWT") from exc
    if header.get("typ") != PROOF_TYPE:
        raise ProofError("DPoP proof typ must be dpop+jwt")
    if header.get("alg") != ALGORITHM:
        raise ProofError("DPoP proof alg must be EdDSA")
    if set(header) - {"typ", "alg", "jwk"}:
        raise ProofError("DPoP proof header has unexpected parameters")
    jwk = header.get("jwk")
    if not isinstance(jwk, dict):
        raise ProofError("DPoP proof carries no jwk")
    return header


def _public_key(jwk: dict[str, Any]) -> ed25519.Ed25519PublicKey:
    if "d" in jwk:
        raise ProofError("DPoP jwk holds a private key")  # RFC 9449 §4.3 check 7
    if jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519" or not isinstance(jwk.get("x"), str):
        raise ProofError("DPoP jwk must be an Ed25519 OKP key")
    try:
        raw = base64.urlsafe_b64decode(jwk["x"] + "=" * (-len(jwk["x"]) % 4))
        return ed25519.Ed25519PublicKey.from_public_bytes(raw)
    except ValueError as exc:
        raise ProofError("DPoP jwk is not a valid Ed25519 key") from exc


def _check_claims(
    claims: dict[str, Any], *, method: str, url: str, now: float, token: str | None
) -> None:
    if claims["htm"] != method:
        raise ProofError("DPoP proof htm does not match the request")
    if not isinstance(claims["htu"], str) or _normal_url(claims["htu"]) != _normal_url(url):
        raise ProofError("DPoP proof htu does not match the request")
    iat = claims["iat"]
    if isinstance(iat, bool) or not isinstance(iat, int | float):
        raise ProofError("DPoP proof iat is not a number")
    if iat < now - MAX_AGE_S or iat > now + MAX_SKEW_S:
        raise ProofError("DPoP proof is too old or from the future; check the clock")
    if not isinstance(claims["jti"], str) or not 8 <= len(claims["jti"]) <= 128:
        raise ProofError("DPoP proof jti must be a string of 8..128 characters")
    if token is not None and claims.get("ath") != token_hash(token):
        raise ProofError("DPoP proof is not bound to this access token")


def _normal_url(url: str) -> str:
    # RFC 9449 §4.3 check 9: compare without query and fragment; scheme and host are
    # case-insensitive (RFC 3986 §6.2.2.1).
    parts = urlsplit(url)
    return urlunsplit((parts.scheme.lower(), parts.netloc.lower(), parts.path, "", ""))
