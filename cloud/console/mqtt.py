"""The MQTT credentials page: list, issue (token shown once) and revoke a tenant's credentials.

Contract:

* Tenant admins only (``tokens:write``, like the API tokens page); the REST twin under
  ``/api/v1/mqtt/credentials`` needs an API token with ``mqtt:admin``. Issuing also checks
  the tenant's minimum sign-in method for this session, as issuing an API token does.
* Every call is keyed by the signed-in user's tenant: another tenant's credential name is
  "not found" exactly like a missing one.
* When the broker is not set up on this core (no ``mqtt.toml``, see ``docs/mqtt.md``) the page
  says so and offers no form; a broker that is set up but down or refusing is reported on the
  page, never as a crash. The token is rendered once in the answer to the issuing post and
  is never logged or kept.

Not done here: the credential rules and broker calls (:mod:`cloud.mqtt.credentials`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.routing import Route

from cloud.console.admin import _method_ok
from cloud.console.web import Missing, checked_form, ctx, in_thread, operator, redirect, render
from cloud.console.web import text as form_text
from cloud.errors import ConfigError, Conflict, InvalidInput, NotFound
from cloud.identity.errors import MethodRequired
from cloud.mqtt import credentials as mqtt_credentials
from cloud.mqtt.broker import load_settings
from cloud.mqtt.errors import MqttError

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

    from cloud.home import CoreHome

SCOPE = "tokens:write"
NOT_SET_UP = "The MQTT broker is not set up on this core, so MQTT credentials cannot be issued."
BROKER_FAILED = "The MQTT broker did not accept the change; try again later."


def broker_ready(home: CoreHome) -> bool:
    """Whether this core has a broker set up (``assetbook mqtt setup`` has run)."""
    try:
        load_settings(home)
    except ConfigError:
        return False
    return True


def patterns(value: str) -> list[str]:
    """Topic patterns typed one per line or separated by commas or spaces."""
    return [p for p in value.replace(",", " ").split() if p]


async def credentials(request: Request, issued: str = "", error: str = "") -> Response:
    op = await operator(request, SCOPE)
    home = ctx(request).home
    ready = await in_thread(lambda: broker_ready(home))
    listed = (
        await in_thread(lambda: mqtt_credentials.list_credentials(home, op.user.tenant))
        if ready
        else []
    )
    return render(request, "mqtt.html", operator=op, ready=ready, credentials=listed,
                  issued=issued, error=error, not_set_up=NOT_SET_UP)  # fmt: skip


async def credential_issue(request: Request) -> Response:
    op = await operator(request, SCOPE)
    form = await checked_form(request, op.session.csrf)
    home = ctx(request).home
    name = form_text(form, "name", 63)
    publish = patterns(form_text(form, "publish", 4096))
    subscribe = patterns(form_text(form, "subscribe", 4096))
    try:
        await _method_ok(request, op)
        if not await in_thread(lambda: broker_ready(home)):
            return await credentials(request, error=NOT_SET_UP)
        issued = await in_thread(
            lambda: mqtt_credentials.create_credential(
                home, op.user.tenant, name, publish, subscribe
            )
        )
    except (InvalidInput, Conflict, MethodRequired) as exc:
        return await credentials(request, error=str(exc))
    except (MqttError, ConfigError):
        return await credentials(request, error=BROKER_FAILED)
    return await credentials(request, issued=issued.token)


async def credential_revoke(request: Request) -> Response:
    op = await operator(request, SCOPE)
    form = await checked_form(request, op.session.csrf)
    home = ctx(request).home
    name = form_text(form, "name", 63)
    try:
        await in_thread(lambda: mqtt_credentials.revoke_credential(home, op.user.tenant, name))
    except (NotFound, InvalidInput):
        raise Missing from None
    except (MqttError, ConfigError):
        return await credentials(
            request, error="Revoked here, but the broker was not told; revoke again to retry."
        )
    return redirect("/console/mqtt")


routes = [
    Route("/mqtt", credentials, methods=["GET"]),
    Route("/mqtt", credential_issue, methods=["POST"]),
    Route("/mqtt/revoke", credential_revoke, methods=["POST"]),
]
