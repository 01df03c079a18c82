"""Sign-in and the operator's own account: password, TOTP, passkeys, reset, sessions.

Contract:

* Every refusal of credentials renders the same page with the same words ("Sign-in failed."),
  whatever the cause (unknown user, wrong password, locked, disabled, wrong code): the cause
  goes to the access log only (:mod:`cloud.api.common` keeps the same rule for JSON).
* A successful login replaces the pre-login cookie by a fresh session cookie (no fixation).
* Logout ends the identity session everywhere (tokens revoked, live links closed) and
  deletes the cookie; a copy of the old cookie opens nothing afterwards.

Not done here: the identity rules themselves (:mod:`cloud.identity`).
"""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from cloud.console.security import PRELOGIN_COOKIE, SESSION_COOKIE, origin_allowed, same_secret
from cloud.console.web import (
    Forbidden,
    Missing,
    checked_form,
    ctx,
    in_thread,
    operator,
    redirect,
    render,
    sessions,
    set_cookie,
    text,
)
from cloud.errors import Conflict, InvalidInput, NotFound
from cloud.identity.errors import LoginFailed, MethodRequired, PolicyViolation, Throttled
from cloud.identity.passkeys import new_challenge
from cloud.identity.service import SecondFactor

if TYPE_CHECKING:
    from starlette.requests import Request

    from cloud.console.sessions import PreLogin
    from cloud.identity.sessions import Tokens

FAILED = "Sign-in failed."
SESSION_MAX_AGE_S = 8 * 3600


def _address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _prelogin(request: Request) -> PreLogin:
    return sessions(request).prelogin(request.cookies.get(PRELOGIN_COOKIE))


def _login_page(request: Request, state: PreLogin, error: str = "", status: int = 200) -> Response:
    response = render(request, "login.html", status, csrf=state.csrf, error=error)
    set_cookie(response, PRELOGIN_COOKIE, state.pid, 300)
    return response


async def login_form(request: Request) -> Response:
    return _login_page(request, _prelogin(request))


def _signed_in(
    request: Request, tokens: Tokens, tenant: str, user_id: str, codes: list[str] | None = None
) -> Response:
    table = sessions(request)
    table.end_prelogin(request.cookies.get(PRELOGIN_COOKIE, ""))
    session = table.open(
        tenant, user_id, tokens.session_id, tokens.access_token, tokens.refresh_token,
        tokens.expires_in,
    )  # fmt: skip
    # Recovery codes from an enrolment during sign-in are shown once, before going on.
    if codes:
        response: Response = render(request, "recovery.html", csrf=session.csrf, codes=codes)
    else:
        response = redirect("/console/")
    set_cookie(response, PRELOGIN_COOKIE, "", 0)
    set_cookie(response, SESSION_COOKIE, session.sid, SESSION_MAX_AGE_S)
    return response


async def _owner(request: Request, tokens: Tokens) -> tuple[str, str]:
    store = ctx(request).api.identity.store
    session = await in_thread(lambda: store.session(tokens.session_id))
    return session.tenant, session.user_id


async def login(request: Request) -> Response:
    state = _prelogin(request)
    form = await checked_form(request, state.csrf)
    tenant, email, password = (
        text(form, "tenant", 63),
        text(form, "email", 320),
        text(form, "password"),
    )
    service = ctx(request).api.identity.service
    try:
        result = await in_thread(lambda: service.login(tenant, email, password, _address(request)))
    except (LoginFailed, NotFound, InvalidInput):
        return _login_page(request, state, FAILED, 401)
    except Throttled:
        return _login_page(request, state, "Too many attempts; wait a minute.", 429)
    except MethodRequired as exc:
        return _login_page(
            request, state, f"This tenant requires signing in with {exc.required}.", 403
        )
    if isinstance(result, SecondFactor):
        sessions(request).update_prelogin(
            replace(state, tenant=tenant, ticket=result.ticket, enrol=result.enrol)
        )
        return redirect("/console/login/totp")
    return _signed_in(request, result, *await _owner(request, result))


async def totp_form(request: Request) -> Response:
    state = _prelogin(request)
    if state.ticket is None:
        return redirect("/console/login")
    secret = uri = ""
    if state.enrol:
        service = ctx(request).api.identity.service
        try:
            secret, uri = await in_thread(
                lambda: service.enrol_with_ticket(state.ticket or "", _address(request))
            )
        except (LoginFailed, Throttled, Conflict):
            return _login_page(request, state, FAILED, 401)
    return render(request, "totp.html", csrf=state.csrf, enrol=state.enrol, secret=secret, uri=uri)


async def totp(request: Request) -> Response:
    state = _prelogin(request)
    form = await checked_form(request, state.csrf)
    code, ticket = text(form, "code", 32).strip(), state.ticket or ""
    service = ctx(request).api.identity.service
    codes: list[str] = []
    try:
        if state.enrol:
            tokens, codes = await in_thread(
                lambda: service.confirm_with_ticket(ticket, code, _address(request))
            )
        elif len(code) == 6 and code.isdigit():
            tokens = await in_thread(
                lambda: service.second_factor(ticket, _address(request), code=code)
            )
        else:
            tokens = await in_thread(
                lambda: service.second_factor(ticket, _address(request), recovery=code)
            )
    except (LoginFailed, Throttled, MethodRequired):
        sessions(request).end_prelogin(state.pid)
        return _login_page(request, _prelogin(request), FAILED, 401)
    return _signed_in(request, tokens, *await _owner(request, tokens), codes=codes)


async def passkey_options(request: Request) -> Response:
    state = _prelogin(request)
    if not origin_allowed(ctx(request).origin, request.headers.get("origin")) or not same_secret(
        state.csrf, request.headers.get("x-csrf-token")
    ):
        raise Forbidden
    challenge = new_challenge()
    sessions(request).update_prelogin(replace(state, challenge=challenge))
    options = ctx(request).passkeys.login_options(challenge)
    return JSONResponse(json.loads(options), headers={"cache-control": "no-store"})


async def passkey_login(request: Request) -> Response:
    state = _prelogin(request)
    form = await checked_form(request, state.csrf)
    challenge, tenant = state.challenge, text(form, "tenant", 63)
    sessions(request).update_prelogin(replace(state, challenge=None))  # one use per challenge
    if challenge is None:
        return _login_page(request, state, FAILED, 401)
    service = ctx(request).passkeys
    try:
        tokens = await in_thread(
            lambda: service.login(tenant, challenge, text(form, "response", 65536))
        )
    except (LoginFailed, MethodRequired, NotFound):
        return _login_page(request, state, FAILED, 401)
    return _signed_in(request, tokens, *await _owner(request, tokens))


async def logout(request: Request) -> Response:
    op = await operator(request)
    await checked_form(request, op.session.csrf)
    api = ctx(request).api
    sessions(request).close(op.session.sid)
    jtis = await in_thread(
        lambda: api.identity.sessions.end_session(op.session.session_id, "logout")
    )
    await api.disconnect(jtis)
    response = redirect("/console/login")
    set_cookie(response, SESSION_COOKIE, "", 0)
    # Clear-Site-Data removes anything the browser kept for this origin (W3C Clear Site Data).
    response.headers["clear-site-data"] = '"cache", "storage"'
    return response


# --- password reset -----------------------------------------------------------------------


async def reset_form(request: Request) -> Response:
    state = _prelogin(request)
    response = render(request, "reset.html", csrf=state.csrf, sent=False, error="")
    set_cookie(response, PRELOGIN_COOKIE, state.pid, 300)
    return response


async def reset(request: Request) -> Response:
    state = _prelogin(request)
    form = await checked_form(request, state.csrf)
    service = ctx(request).api.identity.service
    tenant, email = text(form, "tenant", 63), text(form, "email", 320)
    # The same answer whether or not the account (or tenant) exists.
    with contextlib.suppress(NotFound, InvalidInput, Throttled):
        await in_thread(lambda: service.request_reset(tenant, email, _address(request)))
    return render(request, "reset.html", csrf=state.csrf, sent=True, error="")


async def reset_confirm(request: Request) -> Response:
    state = _prelogin(request)
    form = await checked_form(request, state.csrf)
    api = ctx(request).api
    code, password = text(form, "code", 256).strip(), text(form, "password")
    try:
        jtis = await in_thread(lambda: api.identity.service.confirm_reset(code, password))
    except LoginFailed:
        return render(request, "reset.html", 400, csrf=state.csrf, sent=True,
                      error="That reset code is not valid.")  # fmt: skip
    except PolicyViolation as exc:
        return render(request, "reset.html", 400, csrf=state.csrf, sent=True,
                      error="Password refused: " + ", ".join(exc.rules))  # fmt: skip
    await api.disconnect(jtis)
    return _login_page(request, state, "Password changed; sign in with the new one.")


# --- the account page ---------------------------------------------------------------------


async def account(request: Request, **extra: Any) -> Response:
    op = await operator(request)
    context = ctx(request)
    store = context.api.identity.store
    active = await in_thread(lambda: store.active_sessions(op.user.user_id, time.time()))
    keys = await in_thread(lambda: context.passkeys.keys.of_user(op.user.tenant, op.user.user_id))
    values: dict[str, Any] = {"secret": "", "uri": "", "codes": [], "error": "", **extra}
    return render(request, "account.html", operator=op, active=active, keys=keys,
                  current=op.session.session_id, **values)  # fmt: skip


async def end_session(request: Request) -> Response:
    op = await operator(request)
    form = await checked_form(request, op.session.csrf)
    api = ctx(request).api
    target = text(form, "session_id", 64)
    found = await in_thread(lambda: api.identity.store.session(target))
    if found.user_id != op.user.user_id:
        raise Missing
    jtis = await in_thread(lambda: api.identity.sessions.end_session(target, "ended_by_user"))
    sessions(request).close_identity_sessions({target})
    await api.disconnect(jtis)
    return redirect("/console/account" if target != op.session.session_id else "/console/login")


async def totp_begin(request: Request) -> Response:
    op = await operator(request)
    await checked_form(request, op.session.csrf)
    service = ctx(request).api.identity.service
    try:
        secret, uri = await in_thread(lambda: service.begin_totp(op.user.tenant, op.user.user_id))
    except Conflict:
        return await account(request, error="Two-step sign-in is already on.")
    return await account(request, secret=secret, uri=uri)


async def totp_confirm(request: Request) -> Response:
    op = await operator(request)
    form = await checked_form(request, op.session.csrf)
    service = ctx(request).api.identity.service
    code = text(form, "code", 6)
    try:
        codes = await in_thread(lambda: service.confirm_totp(op.user.tenant, op.user.user_id, code))
    except LoginFailed:
        return await account(request, error="That code is not valid.")
    return await account(request, codes=codes)


async def totp_remove(request: Request) -> Response:
    op = await operator(request)
    form = await checked_form(request, op.session.csrf)
    service = ctx(request).api.identity.service
    password = text(form, "password")
    try:
        await in_thread(lambda: service.remove_totp(op.user.tenant, op.user.user_id, password))
    except LoginFailed:
        return await account(request, error="Two-step sign-in stays on: wrong password.")
    except MethodRequired:
        return await account(
            request, error="Two-step sign-in stays on: your organisation requires it."
        )
    except Conflict:
        return await account(request, error="Two-step sign-in is not on.")
    return redirect("/console/account")


async def passkey_register_options(request: Request) -> Response:
    op = await operator(request)
    if not origin_allowed(ctx(request).origin, request.headers.get("origin")) or not same_secret(
        op.session.csrf, request.headers.get("x-csrf-token")
    ):
        raise Forbidden
    state = _prelogin(request)
    challenge = new_challenge()
    sessions(request).update_prelogin(replace(state, challenge=challenge, tenant=op.user.tenant))
    options = ctx(request).passkeys.registration_options(op.user.tenant, op.user.user_id, challenge)
    response = JSONResponse(json.loads(options), headers={"cache-control": "no-store"})
    set_cookie(response, PRELOGIN_COOKIE, state.pid, 300)
    return response


async def passkey_register(request: Request) -> Response:
    op = await operator(request)
    form = await checked_form(request, op.session.csrf)
    state = _prelogin(request)
    challenge = state.challenge
    sessions(request).end_prelogin(state.pid)
    if challenge is None:
        return await account(request, error="The passkey request expired; try again.")
    service = ctx(request).passkeys
    try:
        await in_thread(lambda: service.register(
            op.user.tenant, op.user.user_id, challenge, text(form, "response", 65536),
            text(form, "name", 64) or "passkey",
        ))  # fmt: skip
    except InvalidInput as exc:
        return await account(request, error=str(exc))
    return redirect("/console/account")


async def passkey_remove(request: Request) -> Response:
    op = await operator(request)
    form = await checked_form(request, op.session.csrf)
    keys = ctx(request).passkeys.keys
    credential = text(form, "credential_id", 512)
    try:
        await in_thread(lambda: keys.remove(op.user.tenant, op.user.user_id, credential))
    except NotFound:
        raise Missing from None
    return redirect("/console/account")


async def csp_report(request: Request) -> Response:
    body = b""
    async for chunk in request.stream():  # reports are small: read at most 4 KiB of one
        body += chunk
        if len(body) >= 4096:
            break
    try:
        report = json.loads(body)
        directive = report.get("csp-report", {}).get("violated-directive", "?")
    except (ValueError, AttributeError):
        directive = "unreadable"
    ctx(request).access_log.record("console.csp_violation", directive=str(directive)[:100])
    return Response(status_code=204)


routes = [
    Route("/login", login_form, methods=["GET"]),
    Route("/login", login, methods=["POST"]),
    Route("/login/totp", totp_form, methods=["GET"]),
    Route("/login/totp", totp, methods=["POST"]),
    Route("/login/passkey/options", passkey_options, methods=["POST"]),
    Route("/login/passkey", passkey_login, methods=["POST"]),
    Route("/logout", logout, methods=["POST"]),
    Route("/reset", reset_form, methods=["GET"]),
    Route("/reset", reset, methods=["POST"]),
    Route("/reset/confirm", reset_confirm, methods=["POST"]),
    Route("/account", account, methods=["GET"]),
    Route("/account/sessions/end", end_session, methods=["POST"]),
    Route("/account/totp", totp_begin, methods=["POST"]),
    Route("/account/totp/confirm", totp_confirm, methods=["POST"]),
    Route("/account/totp/remove", totp_remove, methods=["POST"]),
    Route("/account/passkeys/options", passkey_register_options, methods=["POST"]),
    Route("/account/passkeys", passkey_register, methods=["POST"]),
    Route("/account/passkeys/remove", passkey_remove, methods=["POST"]),
    Route("/csp-report", csp_report, methods=["POST"]),
]
