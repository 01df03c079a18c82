"""Tenancy: another tenant's objects answer exactly like missing ones; roles bound scopes."""

from __future__ import annotations

import httpx

from cloud.identity.roles import Role
from cloud.identity.runtime import Identity
from tests.security.conftest import add_user, bearer, client, tokens
from tests.support import RunningCore


def _shape(response: httpx.Response) -> tuple[int, dict[str, object]]:
    body = dict(response.json())
    body.pop("request_id", None)
    return response.status_code, body


async def test_other_tenants_objects_look_missing(
    secure_core: RunningCore, identity: Identity
) -> None:
    identity.service.registry.create_tenant("globex")
    add_user(identity, "admin@acme.test", Role.TENANT_ADMIN)
    foreign = add_user(identity, "admin@globex.test", Role.TENANT_ADMIN, tenant="globex")
    async with client(secure_core, "127.0.0.71") as http:
        acme = bearer((await tokens(http, "admin@acme.test"))["access_token"])
        globex = bearer((await tokens(http, "admin@globex.test", tenant="globex"))["access_token"])
        made = await http.post(
            "/api/v1/api-tokens", headers=globex, json={"name": "g", "scopes": ["events:read"]}
        )
        foreign_jti = made.json()["jti"]
        pairs = [
            ("GET", f"/api/v1/users/{foreign}", "/api/v1/users/u-0000000000000000"),
            (
                "POST",
                f"/api/v1/users/{foreign}/disable",
                "/api/v1/users/u-0000000000000000/disable",
            ),
            ("DELETE", f"/api/v1/api-tokens/{foreign_jti}", "/api/v1/api-tokens/" + "0" * 32),
        ]
        for method, theirs, missing in pairs:
            a = await http.request(method, theirs, headers=acme)
            b = await http.request(method, missing, headers=acme)
            assert _shape(a) == _shape(b) == (404, {"error": "not_found", "message": "not found"})
        listed = (await http.get("/api/v1/users", headers=acme)).json()["users"]
        assert [u["email"] for u in listed] == ["admin@acme.test"]
        # The foreign user is untouched.
        assert identity.store.user("globex", foreign).disabled is False
        # Same email in two tenants is two accounts; logging in to one never reaches the other.
        assert (await tokens(http, "admin@globex.test", tenant="globex"))["access_token"]


async def test_roles_bound_what_a_user_may_do(secure_core: RunningCore, identity: Identity) -> None:
    add_user(identity, "viewer@example.test", Role.VIEWER)
    async with client(secure_core, "127.0.0.72") as http:
        viewer = bearer((await tokens(http, "viewer@example.test"))["access_token"])
        assert (await http.get("/api/v1/events", headers=viewer)).status_code == 200
        assert (await http.get("/api/v1/users", headers=viewer)).status_code == 403
        assert (await http.get("/api/v1/tenant/settings", headers=viewer)).status_code == 403
        assert (await http.get("/api/v1/tenants", headers=viewer)).status_code == 403
        promote = await http.post(
            "/api/v1/users",
            headers=viewer,
            json={"email": "x@example.test", "name": "X", "role": "platform_admin"},
        )
        assert promote.status_code == 403


async def test_platform_admin_manages_tenants_and_tenant_admin_cannot_grant_it(
    secure_core: RunningCore, identity: Identity
) -> None:
    add_user(identity, "root@example.test", Role.PLATFORM_ADMIN)
    add_user(identity, "ta@example.test", Role.TENANT_ADMIN)
    async with client(secure_core, "127.0.0.73") as http:
        root = bearer((await tokens(http, "root@example.test"))["access_token"])
        ta = bearer((await tokens(http, "ta@example.test"))["access_token"])
        created = await http.post("/api/v1/tenants", headers=root, json={"name": "initech"})
        assert created.status_code == 201
        names = (await http.get("/api/v1/tenants", headers=root)).json()["tenants"]
        assert "initech" in names
        grant = await http.post(
            "/api/v1/users",
            headers=ta,
            json={"email": "y@example.test", "name": "Y", "role": "platform_admin"},
        )
        assert grant.status_code == 403
        injected = await http.post(
            "/api/v1/users", headers=ta, json={"email": {"$ne": ""}, "name": "Z"}
        )
        assert injected.status_code == 400
