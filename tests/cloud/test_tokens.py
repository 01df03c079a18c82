"""JWT issuing and verification: RFC 8725 attacks are refused with precise codes."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from cloud import pki, tokens
from cloud.errors import AuthCode, AuthError, ConfigError, Conflict, InvalidInput, NotFound
from cloud.home import CoreHome, init_home, read_active_kid
from cloud.principal import PrincipalKind
from cloud.tokens import Audience, TokenIssuer

T0 = 1_900_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> CoreHome:
    """A home shared by the tests that do not change its keys."""
    return init_home(tmp_path_factory.mktemp("tokens") / "core")


@pytest.fixture
def fresh_home(tmp_path: Path) -> CoreHome:
    return init_home(tmp_path / "core")


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def issuer(home: CoreHome, clock: Clock) -> TokenIssuer:
    return TokenIssuer(home, now=clock)


def _gateway_token(issuer: TokenIssuer, **overrides: Any) -> tuple[str, dict[str, Any]]:
    args: dict[str, Any] = {
        "audience": Audience.LINK,
        "subject": "gw-1",
        "tenant": "acme",
        "kind": PrincipalKind.GATEWAY,
        "lifetime_s": 3600,
        "publish": ["gw/gw-1/#"],
        "subscribe": ["cmd/gw-1/#"],
    }
    args.update(overrides)
    return issuer.issue(**args)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _b64json(value: dict[str, Any]) -> str:
    return _b64(json.dumps(value).encode())


def _parts(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    header, payload, _ = token.split(".")
    return _unb64json(header), _unb64json(payload)


def _unb64json(part: str) -> dict[str, Any]:
    value = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    assert isinstance(value, dict)
    return value


def _sign_ed25519(header: dict[str, Any], claims: dict[str, Any], key: Any) -> str:
    signing_input = f"{_b64json(header)}.{_b64json(claims)}"
    return f"{signing_input}.{_b64(key.sign(signing_input.encode()))}"


def _active_key(home: CoreHome) -> ed25519.Ed25519PrivateKey:
    key = serialization.load_pem_private_key(
        home.signing_key(read_active_kid(home)).read_bytes(), password=None
    )
    assert isinstance(key, ed25519.Ed25519PrivateKey)
    return key


def _expect(code: AuthCode, issuer: TokenIssuer, token: str | None, aud: Audience) -> None:
    with pytest.raises(AuthError) as info:
        issuer.verify(token, aud)
    assert info.value.code is code
    if token:
        assert token not in str(info.value)


# --- the happy path -------------------------------------------------------------------------


def test_valid_token_gives_the_principal(issuer: TokenIssuer) -> None:
    token, claims = _gateway_token(issuer)
    principal = issuer.verify(token, Audience.LINK)
    assert principal.kind is PrincipalKind.GATEWAY
    assert principal.id == "gw-1"
    assert principal.tenant == "acme"
    assert principal.token_id == claims["jti"]
    assert principal.publish == ("gw/gw-1/#",)
    assert principal.subscribe == ("cmd/gw-1/#",)
    assert principal.may_publish("gw/gw-1/dev")
    assert not principal.may_publish("gw/gw-2/dev")


def test_claims_and_header(issuer: TokenIssuer, home: CoreHome) -> None:
    token, claims = _gateway_token(issuer)
    header, payload = _parts(token)
    assert header == {"alg": "EdDSA", "typ": "ab-link+jwt", "kid": read_active_kid(home)}
    assert payload == claims
    assert claims["iss"] == issuer.issuer
    assert claims["aud"] == "assetbook:link"
    assert claims["exp"] == int(T0) + 3600
    assert claims["iat"] == claims["nbf"] == int(T0)
    assert len(bytes.fromhex(claims["jti"])) == 16


def test_jtis_are_unique(issuer: TokenIssuer) -> None:
    jtis = {_gateway_token(issuer)[1]["jti"] for _ in range(50)}
    assert len(jtis) == 50


def test_rest_token_scopes(issuer: TokenIssuer) -> None:
    token, _ = issuer.issue(
        audience=Audience.REST,
        subject="dashboard",
        tenant="acme",
        kind=PrincipalKind.API,
        lifetime_s=60,
        scopes=["events:read"],
    )
    assert _parts(token)[0]["typ"] == "ab-rest+jwt"
    assert issuer.verify(token, Audience.REST).scopes == ("events:read",)


# --- refusals -------------------------------------------------------------------------------


@pytest.mark.parametrize("token", [None, ""])
def test_missing(issuer: TokenIssuer, token: str | None) -> None:
    _expect(AuthCode.MISSING, issuer, token, Audience.LINK)


@pytest.mark.parametrize("token", ["garbage", "a.b", "x" * 10_000, "!!!.???.***"])
def test_malformed(issuer: TokenIssuer, token: str) -> None:
    _expect(AuthCode.MALFORMED, issuer, token, Audience.LINK)


def test_expired(issuer: TokenIssuer, clock: Clock) -> None:
    token, _ = _gateway_token(issuer, lifetime_s=60)
    clock.now = T0 + 60 + tokens.LEEWAY_S  # still inside the leeway
    issuer.verify(token, Audience.LINK)
    clock.now += 1
    _expect(AuthCode.EXPIRED, issuer, token, Audience.LINK)


def test_not_yet_valid(issuer: TokenIssuer, clock: Clock) -> None:
    token, _ = _gateway_token(issuer)
    clock.now = T0 - tokens.LEEWAY_S - 1
    _expect(AuthCode.NOT_YET_VALID, issuer, token, Audience.LINK)


def _resigned(home: CoreHome, claims: dict[str, Any], **header: Any) -> str:
    full = {"alg": "EdDSA", "typ": "ab-link+jwt", "kid": read_active_kid(home), **header}
    return _sign_ed25519(
        {k: v for k, v in full.items() if v is not None}, claims, _active_key(home)
    )


@pytest.mark.parametrize("claim", ["exp", "iss", "aud", "sub", "jti", "nbf", "iat", "tenant"])
def test_required_claims(issuer: TokenIssuer, home: CoreHome, claim: str) -> None:
    _, claims = _gateway_token(issuer)
    del claims[claim]
    _expect(AuthCode.INVALID, issuer, _resigned(home, claims), Audience.LINK)


def test_non_numeric_exp(issuer: TokenIssuer, home: CoreHome) -> None:
    _, claims = _gateway_token(issuer)
    claims["exp"] = "never"
    _expect(AuthCode.INVALID, issuer, _resigned(home, claims), Audience.LINK)


def test_unknown_kind(issuer: TokenIssuer, home: CoreHome) -> None:
    _, claims = _gateway_token(issuer)
    claims["kind"] = "root"
    _expect(AuthCode.INVALID, issuer, _resigned(home, claims), Audience.LINK)


def test_wrong_signature(issuer: TokenIssuer, home: CoreHome) -> None:
    _, claims = _gateway_token(issuer)
    header = {"alg": "EdDSA", "typ": "ab-link+jwt", "kid": read_active_kid(home)}
    forged = _sign_ed25519(header, claims, ed25519.Ed25519PrivateKey.generate())
    _expect(AuthCode.INVALID, issuer, forged, Audience.LINK)


def test_tampered_payload(issuer: TokenIssuer) -> None:
    token, claims = _gateway_token(issuer)
    header, _, signature = token.split(".")
    claims["pub"] = ["#"]  # try to widen the grant
    _expect(AuthCode.INVALID, issuer, f"{header}.{_b64json(claims)}.{signature}", Audience.LINK)


def test_alg_none(issuer: TokenIssuer) -> None:
    _, claims = _gateway_token(issuer)
    token = f"{_b64json({'alg': 'none', 'typ': 'ab-link+jwt'})}.{_b64json(claims)}."
    _expect(AuthCode.ALGORITHM_REFUSED, issuer, token, Audience.LINK)


@pytest.mark.parametrize("encoding", ["raw", "pem"])
def test_hs256_with_the_public_key_as_secret(
    issuer: TokenIssuer, home: CoreHome, encoding: str
) -> None:
    public = _active_key(home).public_key()
    secret = (
        public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        if encoding == "raw"
        else public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    _, claims = _gateway_token(issuer)
    header = {"alg": "HS256", "typ": "ab-link+jwt", "kid": read_active_kid(home)}
    signing_input = f"{_b64json(header)}.{_b64json(claims)}"
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    _expect(AuthCode.ALGORITHM_REFUSED, issuer, f"{signing_input}.{_b64(mac)}", Audience.LINK)


def test_cross_use_is_refused(issuer: TokenIssuer) -> None:
    # RFC 8725 §3.12: a link token is never accepted by REST, nor the reverse.
    link_token, _ = _gateway_token(issuer)
    rest_token, _ = issuer.issue(
        audience=Audience.REST, subject="x", tenant="acme", kind=PrincipalKind.API, lifetime_s=60
    )
    _expect(AuthCode.WRONG_TYPE, issuer, link_token, Audience.REST)
    _expect(AuthCode.WRONG_TYPE, issuer, rest_token, Audience.LINK)
    _expect(AuthCode.WRONG_TYPE, issuer, link_token, Audience.MQTT)


def test_wrong_audience_with_matching_typ(issuer: TokenIssuer, home: CoreHome) -> None:
    _, claims = _gateway_token(issuer)
    claims["aud"] = Audience.REST.value
    _expect(AuthCode.WRONG_AUDIENCE, issuer, _resigned(home, claims), Audience.LINK)


@pytest.mark.parametrize("typ", ["JWT", "ab-rest+jwt", None])
def test_wrong_typ(issuer: TokenIssuer, home: CoreHome, typ: str | None) -> None:
    _, claims = _gateway_token(issuer)
    _expect(AuthCode.WRONG_TYPE, issuer, _resigned(home, claims, typ=typ), Audience.LINK)


@pytest.mark.parametrize("kid", ["0123456789abcdef", "../../etc/passwd", "' OR 1=1", None])
def test_unknown_kid(issuer: TokenIssuer, home: CoreHome, kid: str | None) -> None:
    _, claims = _gateway_token(issuer)
    _expect(AuthCode.UNKNOWN_KEY, issuer, _resigned(home, claims, kid=kid), Audience.LINK)


@pytest.mark.parametrize(
    ("param", "value"),
    [
        ("jku", "https://attacker.example/keys"),
        ("x5u", "https://attacker.example/cert"),
        ("jwk", {"kty": "OKP", "crv": "Ed25519", "x": "AAAA"}),
        ("x5c", ["MIIB"]),
    ],
)
def test_key_bearing_headers_are_refused(
    issuer: TokenIssuer, home: CoreHome, param: str, value: object
) -> None:
    _, claims = _gateway_token(issuer)
    token = _resigned(home, claims, **{param: value})
    _expect(AuthCode.INVALID, issuer, token, Audience.LINK)


def test_critical_header_is_refused(issuer: TokenIssuer, home: CoreHome) -> None:
    # RFC 7515 §4.1.11: a recipient that does not understand a "crit" extension must reject.
    _, claims = _gateway_token(issuer)
    _expect(AuthCode.MALFORMED, issuer, _resigned(home, claims, crit=["exp"]), Audience.LINK)


def test_wrong_issuer(issuer: TokenIssuer, home: CoreHome) -> None:
    _, claims = _gateway_token(issuer)
    claims["iss"] = "https://other-core.example"
    _expect(AuthCode.WRONG_ISSUER, issuer, _resigned(home, claims), Audience.LINK)


def test_token_from_another_core(issuer: TokenIssuer, tmp_path: Path, clock: Clock) -> None:
    other = TokenIssuer(init_home(tmp_path / "other"), now=clock)
    token, _ = _gateway_token(other)
    _expect(AuthCode.UNKNOWN_KEY, issuer, token, Audience.LINK)


def test_revocation_hook(issuer: TokenIssuer) -> None:
    token, claims = _gateway_token(issuer)
    seen: list[str] = []

    def is_active(jti: str) -> bool:
        seen.append(jti)
        return False

    with pytest.raises(AuthError) as info:
        issuer.verify(token, Audience.LINK, is_active=is_active)
    assert info.value.code is AuthCode.REVOKED
    assert seen == [claims["jti"]]
    assert issuer.verify(token, Audience.LINK, is_active=lambda _: True).id == "gw-1"


def test_public_messages_are_coarse() -> None:
    bad_sig = AuthError(AuthCode.INVALID, "signature")
    bad_kid = AuthError(AuthCode.UNKNOWN_KEY, "kid")
    assert bad_sig.public_message == bad_kid.public_message
    assert "kid" not in bad_kid.public_message


# --- issuing checks -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides",
    [{"lifetime_s": 0}, {"subject": ""}, {"tenant": ""}, {"publish": ["gw/#/x"]}],
)
def test_issue_rejects_bad_arguments(issuer: TokenIssuer, overrides: dict[str, Any]) -> None:
    with pytest.raises(InvalidInput):
        _gateway_token(issuer, **overrides)


# --- keys -----------------------------------------------------------------------------------


def test_rotation(fresh_home: CoreHome, clock: Clock) -> None:
    home = fresh_home
    issuer = TokenIssuer(home, now=clock)
    old_token, _ = _gateway_token(issuer)
    old_kid = issuer.active_kid
    new_kid = tokens.rotate_signing_key(home)
    assert new_kid != old_kid
    issuer.reload()
    new_token, _ = _gateway_token(issuer)
    assert _parts(new_token)[0]["kid"] == new_kid
    assert issuer.verify(old_token, Audience.LINK).id == "gw-1"
    assert issuer.verify(new_token, Audience.LINK).id == "gw-1"
    # A fresh issuer (a restarted core) sees the same.
    fresh = TokenIssuer(home, now=clock)
    assert fresh.active_kid == new_kid
    assert fresh.verify(old_token, Audience.LINK).id == "gw-1"


def test_removed_key_stops_verifying(fresh_home: CoreHome, clock: Clock) -> None:
    home = fresh_home
    issuer = TokenIssuer(home, now=clock)
    old_token, _ = _gateway_token(issuer)
    old_kid = issuer.active_kid
    tokens.rotate_signing_key(home)
    tokens.remove_signing_key(home, old_kid)
    issuer.reload()
    _expect(AuthCode.UNKNOWN_KEY, issuer, old_token, Audience.LINK)


def test_active_key_cannot_be_removed(home: CoreHome) -> None:
    with pytest.raises(Conflict):
        tokens.remove_signing_key(home, read_active_kid(home))
    with pytest.raises(NotFound):
        tokens.remove_signing_key(home, "0123456789abcdef")


def test_swapped_key_file_is_detected(fresh_home: CoreHome, clock: Clock) -> None:
    home = fresh_home
    kid = read_active_kid(home)
    _, pem = pki.new_signing_key()
    home.signing_key(kid).write_bytes(pem)
    with pytest.raises(ConfigError, match="does not match"):
        TokenIssuer(home, now=clock)


def test_jwks_holds_public_keys_only(fresh_home: CoreHome, clock: Clock) -> None:
    home = fresh_home
    issuer = TokenIssuer(home, now=clock)
    tokens.rotate_signing_key(home)
    issuer.reload()
    jwks = issuer.jwks()
    assert sorted(k["kid"] for k in jwks["keys"]) == sorted(home.signing_keys())
    for jwk in jwks["keys"]:
        assert set(jwk) == {"kty", "crv", "x", "kid", "alg", "use"}
        assert (jwk["kty"], jwk["crv"], jwk["alg"]) == ("OKP", "Ed25519", "EdDSA")
        raw = base64.urlsafe_b64decode(jwk["x"] + "=")
        public = ed25519.Ed25519PublicKey.from_public_bytes(raw)
        assert pki.key_id(public) == jwk["kid"]
