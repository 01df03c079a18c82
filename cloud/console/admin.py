"""Administration pages: users and roles, tenant settings, API tokens, tenants, the audit log.

Contract: each page needs the same scope as its REST twin in :mod:`cloud.api` (``users:read``
/ ``users:write``, ``tenant:admin``, ``tokens:write``, ``platform:admin``); every lookup is
keyed by the signed-in user's tenant, and another tenant's user or token is "not found".
The audit page shows only records of the user's own tenant (platform admins see all).
The settings page edits every password-policy tunable and login setting that
``PUT /api/v1/tenant/settings`` accepts, validated by the same identity-service functions; a
refused save stores nothing and shows the reason next to the setting it names.

Not done here: the rules behind each change (:mod:`cloud.identity`, :mod:`cloud.registry`).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Final

from starlette.routing import Route

from cloud.console.web import (
    Missing,
    Operator,
    checked_form,
    ctx,
    in_thread,
    operator,
    redirect,
    render,
    text,
)
from cloud.errors import Conflict, InvalidInput, NotFound
from cloud.identity.errors import MethodRequired, PolicyViolation
from cloud.identity.policy import PRESETS, make_policy
from cloud.identity.roles import API_TOKEN_SCOPES, LoginMethod, Role, login_settings_from_dict
from cloud.principal import PrincipalKind
from cloud.registry import validate_id
from cloud.tokens import Audience

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

AUDIT_LINES: Final = 200
AUDIT_SCAN_BYTES: Final = 4 * 1024 * 1024


async def users(request: Request, error: str = "") -> Response:
    op = await operator(request, "users:read")
    store = ctx(request).api.identity.store
    listed = await in_thread(lambda: store.list_users(op.user.tenant))
    roles = [r.value for r in Role if r is not Role.PLATFORM_ADMIN or op.can("platform:admin")]
    return render(request, "users.html", operator=op, users=listed, roles=roles, error=error)


async def user_create(request: Request) -> Response:
    op = await operator(request, "users:write")
    form = await checked_form(request, op.session.csrf)
    service = ctx(request).api.identity.service
    role = text(form, "role", 32)
    try:
        if role not in {r.value for r in Role} or (
            role == Role.PLATFORM_ADMIN and not op.can("platform:admin")
        ):
            raise InvalidInput("unknown role")
        await in_thread(lambda: service.create_user(
            op.user.tenant, text(form, "email", 320), text(form, "name", 200), Role(role),
            text(form, "password") or None,
        ))  # fmt: skip
    except (InvalidInput, Conflict) as exc:
        return await users(request, str(exc))
    except PolicyViolation as exc:
        return await users(request, "Password refused: " + ", ".join(exc.rules))
    return redirect("/console/users")


async def user_change(request: Request) -> Response:
    op = await operator(request, "users:write")
    form = await checked_form(request, op.session.csrf)
    api = ctx(request).api
    user_id, action = text(form, "user_id", 64), text(form, "action", 16)
    service = api.identity.service
    if action == "disable":
        jtis = await in_thread(lambda: service.set_disabled(op.user.tenant, user_id, True))
    elif action == "enable":
        jtis = await in_thread(lambda: service.set_disabled(op.user.tenant, user_id, False))
    elif action == "role" and text(form, "role", 32) in {r.value for r in Role}:
        role = Role(text(form, "role", 32))
        if role is Role.PLATFORM_ADMIN and not op.can("platform:admin"):
            raise Missing
        jtis = await in_thread(lambda: service.set_role(op.user.tenant, user_id, role))
    else:
        return await users(request, "unknown action")
    await api.disconnect(jtis)
    return redirect("/console/users")


#: Password-policy settings the console edits: every tunable of
#: :class:`cloud.identity.policy.PasswordPolicy` that ``PUT /api/v1/tenant/settings`` accepts.
POLICY_NUMBERS: Final = ("min_length", "max_length", "sequence_length")
POLICY_SWITCHES: Final = (
    "require_digit",
    "require_special",
    "forbid_personal_sequences",
    "use_blocklist",
)
LOGIN_NUMBERS: Final = ("lockout_threshold", "lockout_window_s", "lockout_base_s", "lockout_max_s")
SETTINGS_FIELDS: Final = frozenset(
    ("preset", "min_method", *POLICY_NUMBERS, *POLICY_SWITCHES, *LOGIN_NUMBERS)
)


def field_of(message: str) -> str:
    """The settings field an identity-service refusal names ("" when it names none).

    The identity service starts each refusal with the offending setting's name
    (``"min_length must be 8..64 ..."``); an unknown preset is reported on ``preset``.
    """
    if message.startswith("unknown password preset"):
        return "preset"
    first = message.split(" ", 1)[0]
    return first if first in SETTINGS_FIELDS else ""


async def settings(
    request: Request, error: str = "", saved: bool = False, submitted: Any = None
) -> Response:
    op = await operator(request, "tenant:admin")
    store = ctx(request).api.identity.store
    policy, login = await in_thread(lambda: store.tenant_settings(op.user.tenant))
    shown: dict[str, Any] = {**policy.to_dict(), **login.to_dict()}
    if submitted is not None:  # a refused form: show what was typed, next to the error
        shown.update({k: text(submitted, k, 32) for k in SETTINGS_FIELDS - set(POLICY_SWITCHES)})
        shown.update({k: submitted.get(k) == "on" for k in POLICY_SWITCHES})
    return render(request, "settings.html", operator=op, shown=shown,
                  presets=sorted(PRESETS), methods=[m.value for m in LoginMethod],
                  error=error, error_field=field_of(error), saved=saved)  # fmt: skip


def _int(form: Any, name: str) -> int:
    try:
        return int(text(form, name, 12))
    except ValueError:
        raise InvalidInput(f"{name} must be a whole number") from None


async def settings_save(request: Request) -> Response:
    op = await operator(request, "tenant:admin")
    form = await checked_form(request, op.session.csrf)
    service = ctx(request).api.identity.service
    try:
        policy = make_policy(
            text(form, "preset", 16),
            **{name: _int(form, name) for name in POLICY_NUMBERS},
            **{name: form.get(name) == "on" for name in POLICY_SWITCHES},
        )
        login = login_settings_from_dict({
            "min_method": text(form, "min_method", 32),
            **{name: _int(form, name) for name in LOGIN_NUMBERS},
        })  # fmt: skip
        await in_thread(lambda: service.set_settings(op.user.tenant, policy, login))
    except InvalidInput as exc:
        return await settings(request, str(exc), submitted=form)
    return await settings(request, saved=True)


async def tokens(request: Request, issued: str = "", error: str = "") -> Response:
    op = await operator(request, "tokens:write")
    registry = ctx(request).api.registry
    records = await in_thread(lambda: registry.list_tokens(op.user.tenant))
    api_tokens = [r for r in records if r.kind is PrincipalKind.API]
    return render(request, "tokens.html", operator=op, tokens=api_tokens, issued=issued,
                  scopes=sorted(API_TOKEN_SCOPES), error=error,
                  mqtt=_has_mqtt())  # fmt: skip


def _has_mqtt() -> bool:
    try:
        import cloud.mqtt.rest  # noqa: F401
    except ImportError:
        return False
    return True


async def _method_ok(request: Request, op: Operator) -> None:
    store = ctx(request).api.identity.store
    _, login = await in_thread(lambda: store.tenant_settings(op.user.tenant))
    from cloud.identity.roles import satisfies

    session = await in_thread(lambda: store.session(op.session.session_id))
    if not satisfies(session.method, login.min_method):
        raise MethodRequired(login.min_method.value)


async def token_issue(request: Request) -> Response:
    op = await operator(request, "tokens:write")
    form = await checked_form(request, op.session.csrf)
    api = ctx(request).api
    scopes = [s for s in form.getlist("scope") if isinstance(s, str)]
    name = text(form, "name", 63)
    try:
        validate_id(name, "API token name")
        if not scopes or not set(scopes) <= API_TOKEN_SCOPES & set(op.principal.scopes):
            raise InvalidInput("choose at least one grantable scope")
        days = _int(form, "days")
        if not 1 <= days <= 365:
            raise InvalidInput("lifetime must be 1..365 days")
        await _method_ok(request, op)
    except (InvalidInput, MethodRequired) as exc:
        return await tokens(request, error=str(exc))

    def issue() -> str:
        token, claims = api.issuer.issue(
            audience=Audience.REST, subject=name, tenant=op.user.tenant,
            kind=PrincipalKind.API, lifetime_s=days * 86400, scopes=scopes,
        )  # fmt: skip
        api.registry.record_claims(claims)
        return token

    return await tokens(request, issued=await in_thread(issue))


async def token_revoke(request: Request) -> Response:
    op = await operator(request, "tokens:write")
    form = await checked_form(request, op.session.csrf)
    api = ctx(request).api
    jti = text(form, "jti", 64)

    def revoke() -> None:
        record = api.registry.get_token(jti)
        if record.tenant != op.user.tenant or record.kind is not PrincipalKind.API:
            raise NotFound("no such token")
        api.registry.revoke_token(jti)

    try:
        await in_thread(revoke)
    except NotFound:
        raise Missing from None
    await api.disconnect([jti])
    return redirect("/console/tokens")


async def tenants(request: Request, error: str = "") -> Response:
    op = await operator(request, "platform:admin")
    registry = ctx(request).api.registry
    listed = await in_thread(registry.list_tenants)
    return render(request, "tenants.html", operator=op, tenants=listed, error=error)


async def tenant_create(request: Request) -> Response:
    op = await operator(request, "platform:admin")
    form = await checked_form(request, op.session.csrf)
    registry = ctx(request).api.registry
    name = text(form, "name", 63)
    try:
        validate_id(name, "tenant name")
        await in_thread(lambda: registry.create_tenant(name))
    except (InvalidInput, Conflict) as exc:
        return await tenants(request, str(exc))
    return redirect("/console/tenants")


def read_audit(path: Any, tenant: str | None, filters: dict[str, str]) -> list[dict[str, Any]]:
    """The newest :data:`AUDIT_LINES` records of ``tenant`` (``None``: all) matching filters
    (``event`` prefix, ``principal``, ``text`` anywhere in the line), newest first."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, 2)
            size = handle.tell()
            handle.seek(max(0, size - AUDIT_SCAN_BYTES))
            lines = handle.read().splitlines()
    except FileNotFoundError:
        return []
    found: list[dict[str, Any]] = []
    for raw in reversed(lines):
        try:
            record = json.loads(raw)
        except ValueError:
            continue
        if not isinstance(record, dict):
            continue
        if tenant is not None and record.get("tenant") != tenant:
            continue
        if not str(record.get("event", "")).startswith(filters.get("event", "")):
            continue
        if filters.get("principal") and record.get("principal") != filters["principal"]:
            continue
        if filters.get("text") and filters["text"] not in raw.decode("utf-8", "replace"):
            continue
        found.append(record)
        if len(found) >= AUDIT_LINES:
            break
    return found


async def audit(request: Request) -> Response:
    op = await operator(request, "tenant:admin")
    filters = {k: request.query_params.get(k, "")[:100] for k in ("event", "principal", "text")}
    tenant = (
        None if op.can("platform:admin") and request.query_params.get("all") else op.user.tenant
    )
    path = ctx(request).home.access_log
    records = await in_thread(lambda: read_audit(path, tenant, filters))
    rows = [
        (r.get("ts", ""), r.get("event", ""), r.get("principal") or "",
         json.dumps({k: v for k, v in r.items() if k not in ("ts", "event", "principal")})[:400])
        for r in records
    ]  # fmt: skip
    return render(request, "audit.html", operator=op, rows=rows, filters=filters)


routes = [
    Route("/users", users, methods=["GET"]),
    Route("/users", user_create, methods=["POST"]),
    Route("/users/change", user_change, methods=["POST"]),
    Route("/settings", settings, methods=["GET"]),
    Route("/settings", settings_save, methods=["POST"]),
    Route("/tokens", tokens, methods=["GET"]),
    Route("/tokens", token_issue, methods=["POST"]),
    Route("/tokens/revoke", token_revoke, methods=["POST"]),
    Route("/tenants", tenants, methods=["GET"]),
    Route("/tenants", tenant_create, methods=["POST"]),
    Route("/audit", audit, methods=["GET"]),
]
