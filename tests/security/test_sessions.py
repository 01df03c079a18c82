"""Tokens and sessions: JWT shape and JWKS, refresh rotation and reuse, logout everywhere,
API tokens over REST, device revocation closing the live link."""

from __future__ import annotations

import jwt
import pytest
import trio
from websockets.exceptions import ConnectionClosed
from websockets.trio.client import connect

from cloud.identity.roles import Role
from cloud.identity.runtime import Identity
from cloud.pki import client_ssl_context
from protocol import limits
from tests.security.conftest import add_user, bearer, client, tokens
from tests.support import RunningCore


async def _closed_with(ws: object, code: int) -> None:
    from websockets.trio.client import ClientConnection

    assert isinstance(ws, ClientConnection)
    with trio.fail_after(5), pytest.raises(ConnectionClosed) as caught:
        await ws.recv()
    assert caught.value.rcvd is not None and caught.value.rcvd.code == code


async def test_access_token_shape_verifies_against_the_jwks(
    secure_core: RunningCore, identity: Identity
) -> None:
    add_user(identity, "jwt@example.test")
    async with client(secure_core, "127.0.0.61") as http:
        access = (await tokens(http, "jwt@example.test"))["access_token"]
        jwks = (await http.get("/api/v1/.well-known/jwks.json")).json()
    header = jwt.get_unverified_header(access)
    assert header["alg"] == "EdDSA" and header["typ"] == "ab-rest+jwt"
    key = next(k for k in jwks["keys"] if k["kid"] == header["kid"])
    assert set(key) == {"kty", "crv", "x", "kid", "alg", "use"}  # public only
    claims = jwt.decode(
        access,
        jwt.PyJWK(key).key,
        algorithms=["EdDSA"],
        audience="assetbook:rest",
    )
    assert claims["exp"] - claims["iat"] <= 15 * 60
    assert claims["kind"] == "user" and len(claims["jti"]) == 32


async def test_refresh_rotates_and_reuse_ends_the_family(
    secure_core: RunningCore, identity: Identity
) -> None:
    add_user(identity, "refresh@example.test")
    async with client(secure_core, "127.0.0.62") as http:
        first = await tokens(http, "refresh@example.test")
        assert len(first["refresh_token"]) >= 43  # 256 bits, base64url
        second = (
            await http.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
        ).json()
        assert second["refresh_token"] != first["refresh_token"]
        reuse = await http.post(
            "/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]}
        )
        assert reuse.status_code == 401
        # The whole family is revoked: the newest refresh and access tokens die too.
        later = await http.post(
            "/api/v1/auth/refresh", json={"refresh_token": second["refresh_token"]}
        )
        assert later.status_code == 401
        me = await http.get("/api/v1/auth/me", headers=bearer(second["access_token"]))
        assert me.status_code == 401


async def test_refresh_tokens_are_stored_hashed(
    secure_core: RunningCore, identity: Identity
) -> None:
    add_user(identity, "stored@example.test")
    async with client(secure_core, "127.0.0.63") as http:
        issued = await tokens(http, "stored@example.test")
    database = secure_core.home.db_path.read_bytes()
    assert issued["refresh_token"].encode() not in database
    assert issued["access_token"].encode() not in database


async def test_logout_revokes_everything_and_closes_the_websocket(
    secure_core: RunningCore, identity: Identity
) -> None:
    add_user(identity, "bye@example.test")
    async with client(secure_core, "127.0.0.64") as http:
        session = await tokens(http, "bye@example.test")
        access = bearer(session["access_token"])
        link = (await http.post("/api/v1/auth/link-token", headers=access)).json()
        async with connect(
            secure_core.link_url,
            ssl=client_ssl_context(secure_core.home.ca_cert),
            additional_headers=bearer(link["token"]),
            subprotocols=[limits.SUBPROTOCOL],  # type: ignore[list-item]
        ) as ws:
            out = await http.post("/api/v1/auth/logout", headers=access)
            assert out.status_code == 200
            await _closed_with(ws, 4401)
        assert (await http.get("/api/v1/auth/me", headers=access)).status_code == 401
        assert (await http.get("/api/v1/events", headers=access)).status_code == 401
        refreshed = await http.post(
            "/api/v1/auth/refresh", json={"refresh_token": session["refresh_token"]}
        )
        assert refreshed.status_code == 401


async def test_api_tokens_over_rest_are_scoped_shown_once_and_revocable(
    secure_core: RunningCore, identity: Identity
) -> None:
    add_user(identity, "admin@example.test", Role.TENANT_ADMIN)
    async with client(secure_core, "127.0.0.65") as http:
        admin = bearer((await tokens(http, "admin@example.test"))["access_token"])
        too_much = await http.post(
            "/api/v1/api-tokens", headers=admin, json={"name": "x", "scopes": ["users:write"]}
        )
        assert too_much.status_code == 403
        made = await http.post(
            "/api/v1/api-tokens",
            headers=admin,
            json={"name": "grafana", "scopes": ["events:read"], "lifetime_s": 3600},
        )
        assert made.status_code == 201, made.text
        token, jti = made.json()["token"], made.json()["jti"]
        listed = (await http.get("/api/v1/api-tokens", headers=admin)).json()["tokens"]
        assert [t["jti"] for t in listed] == [jti] and "token" not in listed[0]
        third = bearer(token)
        assert (await http.get("/api/v1/events", headers=third)).status_code == 200
        assert (await http.get("/api/v1/users", headers=third)).status_code == 403
        revoked = await http.delete(f"/api/v1/api-tokens/{jti}", headers=admin)
        assert revoked.status_code == 200
        assert (await http.get("/api/v1/events", headers=third)).status_code == 401


async def test_revoking_a_gateway_disconnects_it_at_once(
    secure_core: RunningCore, identity: Identity
) -> None:
    add_user(identity, "ops@example.test", Role.OPERATOR)
    gateway_token = secure_core.gateway_token("gw-1")
    async with client(secure_core, "127.0.0.66") as http:
        ops = bearer((await tokens(http, "ops@example.test"))["access_token"])
        async with connect(
            secure_core.link_url,
            ssl=client_ssl_context(secure_core.home.ca_cert),
            additional_headers=bearer(gateway_token),
            subprotocols=[limits.SUBPROTOCOL],  # type: ignore[list-item]
        ) as ws:
            revoked = await http.post("/api/v1/gateways/gw-1/revoke", headers=ops)
            assert revoked.status_code == 200, revoked.text
            assert revoked.json() == {"revoked_tokens": 1, "disconnected_links": 1}
            await _closed_with(ws, 4401)
        missing = await http.post("/api/v1/gateways/gw-404/revoke", headers=ops)
        assert missing.status_code == 404
