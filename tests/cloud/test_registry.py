"""Registry of tenants, gateways, modules and tokens, and the credential helpers."""

from __future__ import annotations

import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from cloud.errors import AuthCode, AuthError, ConfigError, Conflict, InvalidInput, NotFound
from cloud.home import CoreHome, init_home
from cloud.principal import PrincipalKind
from cloud.registry import (
    Registry,
    issue_api_token,
    issue_gateway_credentials,
    issue_module_token,
    verify_active,
)
from cloud.tokens import Audience, TokenIssuer

T0 = 1_900_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> CoreHome:
    """Shared: the tests below pass their own registry, so the home's database is unused."""
    return init_home(tmp_path_factory.mktemp("registry") / "core")


@pytest.fixture
def registry(tmp_path: Path, clock: Clock) -> Iterator[Registry]:
    with Registry(tmp_path / "core.sqlite", now=clock) as reg:
        reg.create_tenant("acme")
        yield reg


@pytest.fixture
def issuer(home: CoreHome, clock: Clock) -> TokenIssuer:
    return TokenIssuer(home, now=clock)


def _record(registry: Registry, jti: str, subject: str = "gw-1", expires: float = T0 + 60) -> None:
    registry.record_token(
        jti,
        tenant="acme",
        kind=PrincipalKind.GATEWAY,
        subject=subject,
        audience=Audience.LINK.value,
        issued_at=T0,
        expires_at=expires,
        publish=[f"gw/{subject}/#"],
    )


# --- tenants and gateways -------------------------------------------------------------------


def test_tenants(registry: Registry) -> None:
    registry.create_tenant("beta")
    assert [t.name for t in registry.list_tenants()] == ["acme", "beta"]
    assert registry.get_tenant("beta").created_at == T0
    with pytest.raises(Conflict):
        registry.create_tenant("beta")
    with pytest.raises(NotFound):
        registry.get_tenant("nope")


@pytest.mark.parametrize("bad", ["", "Upper", "-lead", "a" * 64, "a/b", "../x", "a b", "é"])
def test_identifiers_are_validated(registry: Registry, bad: str) -> None:
    with pytest.raises(InvalidInput):
        registry.create_gateway("acme", bad)
    with pytest.raises(InvalidInput):
        registry.create_tenant(bad)
    assert registry.list_gateways("acme") == []


def test_longest_identifier(registry: Registry) -> None:
    name = "a" + "-" * 61 + "z"
    assert registry.create_gateway("acme", name).gateway_id == name


def test_gateways(registry: Registry) -> None:
    registry.create_gateway("acme", "gw-2")
    registry.create_gateway("acme", "gw-1")
    assert [g.gateway_id for g in registry.list_gateways("acme")] == ["gw-1", "gw-2"]
    with pytest.raises(Conflict):
        registry.create_gateway("acme", "gw-1")
    with pytest.raises(NotFound):
        registry.create_gateway("nope", "gw-1")
    with pytest.raises(NotFound):
        registry.list_gateways("nope")


def test_gateway_ids_are_per_tenant(registry: Registry) -> None:
    registry.create_tenant("beta")
    registry.create_gateway("acme", "gw-1")
    registry.create_gateway("beta", "gw-1")
    assert len(registry.list_gateways("beta")) == 1


def test_gateway_seen(registry: Registry) -> None:
    registry.create_gateway("acme", "gw-1")
    assert registry.get_gateway("acme", "gw-1").last_seen is None
    registry.record_gateway_seen("acme", "gw-1", T0 + 5)
    assert registry.get_gateway("acme", "gw-1").last_seen == T0 + 5
    with pytest.raises(NotFound):
        registry.record_gateway_seen("acme", "gw-9", T0)


# --- tokens ---------------------------------------------------------------------------------


def test_token_lifecycle(registry: Registry, clock: Clock) -> None:
    _record(registry, "j1")
    assert registry.is_token_active("j1")
    assert not registry.is_token_active("unknown")
    registry.revoke_token("j1")
    assert not registry.is_token_active("j1")
    registry.revoke_token("j1")  # idempotent
    assert registry.get_token("j1").revoked_at == T0
    with pytest.raises(NotFound):
        registry.revoke_token("unknown")


def test_expired_token_is_inactive(registry: Registry, clock: Clock) -> None:
    _record(registry, "j1", expires=T0 + 60)
    clock.now = T0 + 61
    assert not registry.is_token_active("j1")


def test_record_token_checks(registry: Registry) -> None:
    _record(registry, "j1")
    with pytest.raises(Conflict):
        _record(registry, "j1")
    with pytest.raises(NotFound):
        registry.record_token(
            "j2",
            tenant="nope",
            kind=PrincipalKind.API,
            subject="x",
            audience="assetbook:rest",
            issued_at=T0,
            expires_at=T0 + 1,
        )


def test_list_tokens(registry: Registry) -> None:
    _record(registry, "j1")
    _record(registry, "j2", subject="gw-2")
    records = registry.list_tokens("acme")
    assert [r.jti for r in records] == ["j1", "j2"]
    assert records[1].publish == ("gw/gw-2/#",)
    assert records[1].kind is PrincipalKind.GATEWAY


def test_revoking_a_gateway_revokes_its_tokens_only(registry: Registry) -> None:
    registry.create_gateway("acme", "gw-1")
    registry.create_gateway("acme", "gw-2")
    _record(registry, "a", "gw-1")
    _record(registry, "b", "gw-1")
    _record(registry, "c", "gw-2")
    assert registry.revoke_gateway("acme", "gw-1") == 2
    assert registry.get_gateway("acme", "gw-1").revoked
    assert not registry.is_token_active("a")
    assert not registry.is_token_active("b")
    assert registry.is_token_active("c")
    with pytest.raises(NotFound):
        registry.revoke_gateway("acme", "gw-9")


# --- storage properties ---------------------------------------------------------------------


def test_database_file_is_private(tmp_path: Path) -> None:
    path = tmp_path / "fresh.sqlite"
    Registry(path).close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_missing_home_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        Registry(tmp_path / "no-such-home" / "db" / "core.sqlite")


def test_shares_the_file_with_other_tables(tmp_path: Path) -> None:
    path = tmp_path / "core.sqlite"
    with sqlite3.connect(path) as other:
        other.execute("CREATE TABLE gateways (gateway TEXT PRIMARY KEY, acked_seq INTEGER)")
        other.execute("INSERT INTO gateways VALUES ('gw-1', 42)")
    with Registry(path) as reg:
        reg.create_tenant("acme")
        reg.create_gateway("acme", "gw-1")
    with Registry(path) as reopened:  # schema creation is idempotent
        assert [g.gateway_id for g in reopened.list_gateways("acme")] == ["gw-1"]
    with sqlite3.connect(path) as other:
        assert other.execute("SELECT * FROM gateways").fetchall() == [("gw-1", 42)]


async def test_safe_from_worker_threads(registry: Registry) -> None:
    async def create(i: int) -> None:
        await trio.to_thread.run_sync(registry.create_gateway, "acme", f"gw-{i}")

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            for i in range(20):
                nursery.start_soon(create, i)
    assert len(registry.list_gateways("acme")) == 20


# --- credentials ----------------------------------------------------------------------------


def test_gateway_credentials(home: CoreHome, registry: Registry, issuer: TokenIssuer) -> None:
    creds = issue_gateway_credentials(home, "acme", "gw-1", registry=registry, issuer=issuer)
    assert creds.link_url == "wss://localhost:8444/link"
    assert creds.ca_pem == home.ca_cert.read_bytes()
    assert creds.token not in repr(creds)
    principal = verify_active(issuer, registry, creds.token, Audience.LINK)
    assert (principal.kind, principal.id, principal.tenant) == (
        PrincipalKind.GATEWAY,
        "gw-1",
        "acme",
    )
    assert principal.token_id == creds.token_id
    assert principal.may_publish("gw/gw-1/thermo")
    assert not principal.may_publish("gw/gw-2/thermo")
    assert principal.may_subscribe("cmd/gw-1/#")
    assert not principal.may_subscribe("cmd/#")
    assert [g.gateway_id for g in registry.list_gateways("acme")] == ["gw-1"]


def test_every_gateway_gets_its_own_token(
    home: CoreHome, registry: Registry, issuer: TokenIssuer
) -> None:
    a = issue_gateway_credentials(home, "acme", "gw-a", registry=registry, issuer=issuer)
    b = issue_gateway_credentials(home, "acme", "gw-b", registry=registry, issuer=issuer)
    again = issue_gateway_credentials(home, "acme", "gw-a", registry=registry, issuer=issuer)
    assert len({a.token, b.token, again.token}) == 3
    assert len({a.token_id, b.token_id, again.token_id}) == 3


def test_revoked_gateway(home: CoreHome, registry: Registry, issuer: TokenIssuer) -> None:
    creds = issue_gateway_credentials(home, "acme", "gw-1", registry=registry, issuer=issuer)
    registry.revoke_gateway("acme", "gw-1")
    with pytest.raises(AuthError) as info:
        verify_active(issuer, registry, creds.token, Audience.LINK)
    assert info.value.code is AuthCode.REVOKED
    with pytest.raises(Conflict):
        issue_gateway_credentials(home, "acme", "gw-1", registry=registry, issuer=issuer)


def test_unrecorded_token_is_not_valid(registry: Registry, issuer: TokenIssuer) -> None:
    token, _ = issuer.issue(
        audience=Audience.LINK,
        subject="gw-1",
        tenant="acme",
        kind=PrincipalKind.GATEWAY,
        lifetime_s=60,
    )
    assert issuer.verify(token, Audience.LINK).id == "gw-1"  # the signature alone is fine
    with pytest.raises(AuthError) as info:
        verify_active(issuer, registry, token, Audience.LINK)
    assert info.value.code is AuthCode.REVOKED


def test_unknown_tenant(home: CoreHome, registry: Registry, issuer: TokenIssuer) -> None:
    with pytest.raises(NotFound):
        issue_gateway_credentials(home, "nope", "gw-1", registry=registry, issuer=issuer)
    with pytest.raises(NotFound):
        issue_api_token(home, "nope", "dash", ["events:read"], 60, registry=registry)


def test_token_strings_never_reach_the_database(
    home: CoreHome, issuer: TokenIssuer, clock: Clock, tmp_path: Path
) -> None:
    db_dir = tmp_path / "db"
    db_dir.mkdir()
    with Registry(db_dir / "core.sqlite", now=clock) as reg:
        reg.create_tenant("acme")
        creds = issue_gateway_credentials(home, "acme", "gw-1", registry=reg, issuer=issuer)
        api_token, _ = issue_api_token(
            home, "acme", "dash", ["events:read"], 600, registry=reg, issuer=issuer
        )
        assert reg.is_token_active(creds.token_id)
    stored = b"".join(p.read_bytes() for p in db_dir.iterdir() if p.is_file())
    for token in (creds.token, api_token):
        signature = token.rsplit(".", 1)[1]
        assert token.encode() not in stored
        assert signature.encode() not in stored
    assert creds.token_id.encode() in stored  # the jti is what is kept


def test_api_token(home: CoreHome, registry: Registry, issuer: TokenIssuer) -> None:
    token, claims = issue_api_token(
        home, "acme", "dashboard", ["events:read"], 3600, registry=registry, issuer=issuer
    )
    principal = verify_active(issuer, registry, token, Audience.REST)
    assert principal.kind is PrincipalKind.API
    assert principal.scopes == ("events:read",)
    assert claims["exp"] - claims["iat"] == 3600
    with pytest.raises(AuthError) as info:
        verify_active(issuer, registry, token, Audience.LINK)
    assert info.value.code is AuthCode.WRONG_TYPE


@pytest.mark.parametrize(
    ("scopes", "lifetime"),
    [([], 60), (["events"], 60), (["Events:Read"], 60), (["events:read"], 0)],
)
def test_api_token_arguments(
    home: CoreHome, registry: Registry, scopes: list[str], lifetime: int
) -> None:
    with pytest.raises(InvalidInput):
        issue_api_token(home, "acme", "dash", scopes, lifetime, registry=registry)
    assert registry.list_tokens("acme") == []


def test_api_token_lifetime_is_capped(home: CoreHome, registry: Registry) -> None:
    with pytest.raises(InvalidInput):
        issue_api_token(home, "acme", "dash", ["events:read"], 400 * 86400, registry=registry)


def test_module_token(home: CoreHome, registry: Registry, issuer: TokenIssuer) -> None:
    token, _ = issue_module_token(
        home, "acme", "logger", [], ["gw/+/#"], registry=registry, issuer=issuer
    )
    principal = verify_active(issuer, registry, token, Audience.LINK)
    assert principal.kind is PrincipalKind.MODULE
    assert principal.may_subscribe("gw/gw-1/#")
    assert not principal.may_publish("gw/gw-1/x")
    assert registry.revoke_module("acme", "logger") == 1
    with pytest.raises(AuthError):
        verify_active(issuer, registry, token, Audience.LINK)
    with pytest.raises(Conflict):
        issue_module_token(home, "acme", "logger", [], [], registry=registry, issuer=issuer)


def test_module_token_rejects_bad_patterns(home: CoreHome, registry: Registry) -> None:
    with pytest.raises(InvalidInput):
        issue_module_token(home, "acme", "logger", ["gw/#/x"], [], registry=registry)
