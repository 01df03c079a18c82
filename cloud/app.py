"""The core process: link server and REST API over one store, bus and access log.

:func:`serve_core` opens everything a core home describes, serves until ``stop`` is set (or
the task is cancelled) and closes the store only after in-flight commits have finished.
Token checks happen on the event loop: verifying an EdDSA signature and one indexed SQLite
read for revocation take tens of microseconds, once per connection or request.
"""

from __future__ import annotations

import gc
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve as serve_http

from cloud.accesslog import AccessLog, open_access_log
from cloud.api import IdentityApi
from cloud.bus import LocalBus
from cloud.fleet.runtime import open_fleet, serve_fleet
from cloud.home import load_config
from cloud.http_redirect import serve_plain_http
from cloud.identity.runtime import open_identity, serve_identity
from cloud.link import LinkServer
from cloud.pki import server_ssl_context
from cloud.ratelimit import hypercorn_limits
from cloud.registry import Registry, verify_active
from cloud.rest import create_rest_app
from cloud.storage.sqlite import open_sqlite_store
from cloud.tokens import Audience, TokenIssuer

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from starlette.types import ASGIApp

    from cloud.api.fleet import FleetApi
    from cloud.console import ConsoleContext
    from cloud.home import CoreHome
    from cloud.identity.runtime import Identity
    from cloud.principal import Principal
    from cloud.storage.base import EventStore

log = logging.getLogger(__name__)

EVENTS_DB = "events.sqlite"
#: The oldest generation's collection threshold once the core runs (CPython's default is 10):
#: see the note where it is set.
FULL_COLLECTION_THRESHOLD = 100


@dataclass(frozen=True, slots=True)
class CoreEndpoints:
    link_url: str
    rest_url: str


async def serve_core(
    home: CoreHome,
    stop: trio.Event,
    *,
    task_status: trio.TaskStatus[CoreEndpoints] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the core described by ``home`` until ``stop`` is set."""
    config = load_config(home)
    issuer = TokenIssuer(home)
    access_log = open_access_log(home)  # hash-chained (cloud.accesslog)
    ssl_context = server_ssl_context(home)
    with Registry(home.db_path) as registry:

        def authenticator(audience: Audience) -> Callable[[str], Awaitable[Principal]]:
            async def authenticate(token: str) -> Principal:
                return verify_active(issuer, registry, token, audience)

            return authenticate

        async with open_sqlite_store(home.db_dir / EVENTS_DB) as store:
            bus = LocalBus()
            fleet = open_fleet(home, registry, issuer, access_log)  # enrolment, config, updates
            link = LinkServer(
                authenticate=authenticator(Audience.LINK),
                store=store,
                bus=bus,
                access_log=access_log,
                proof=fleet.proof,
                commands=fleet.hub,
            )
            identity = open_identity(home, registry, issuer, access_log)
            rest_api = IdentityApi(identity, registry, issuer, link.disconnect)
            rest = create_rest_app(
                store,
                authenticator(Audience.REST),
                access_log,
                rest_api,
                mqtt_home=home,
                fleet=fleet.api,
                limits=config.http_limits,
                console=_console(
                    home, config.rest_url, identity, rest_api, store, bus, access_log, fleet.api
                ),
            )
            http = HypercornConfig()
            http.bind = [f"{_bind_host(config.listen_host)}:{config.rest_port}"]
            http.certfile = str(home.server_cert)
            http.keyfile = str(home.server_key)
            http.include_server_header = False
            # HTTP/1.1 only: browsers otherwise pick HTTP/2, and a reset h2 stream can raise
            # KeyError inside Hypercorn's h2 protocol and take the whole listener down.
            http.alpn_protocols = ["http/1.1"]
            http.accesslog = None  # our own access log records every request
            http.errorlog = logging.getLogger("cloud.http")
            hypercorn_limits(http, config.http_limits)  # header size, slow clients
            async with trio.open_nursery() as nursery:
                await nursery.start(link.serve, config.listen_host, config.link_port, ssl_context)
                await nursery.start(serve_identity, identity, link.disconnect)
                await nursery.start(_serve_rest, rest, http)
                if config.http_port is not None:  # plain HTTP: redirect pages, refuse the API
                    await nursery.start(
                        serve_plain_http,
                        config.listen_host,
                        config.http_port,
                        config.rest_url,
                        access_log,
                    )
                await nursery.start(serve_fleet, fleet)
                # Everything made so far (modules, the apps, caches) lives as long as the core.
                # Frozen, full collections no longer walk it: in bench.query_scale the same
                # move halved the CPU p99 of a page query (docs/performance.md).
                gc.freeze()
                # Batches wait in link queues and group commits long enough to reach the
                # oldest generation, and every full collection walked all of them: in
                # bench.throughput (16 gateways, 45,000 events/s) 18 full collections of 26 ms
                # in 10 s, 1.1 of the core's 18.5 µs of CPU per event. One full collection
                # per 100 collections of the middle generation instead of per 10 cut that to
                # 0.1 µs. Garbage in reference cycles that got that old waits longer.
                young, middle, _ = gc.get_threshold()
                gc.set_threshold(young, middle, FULL_COLLECTION_THRESHOLD)
                access_log.record("core.started", link=config.link_url, rest=config.rest_url)
                task_status.started(CoreEndpoints(config.link_url, config.rest_url))
                await stop.wait()
                access_log.record("core.stopping")
                nursery.cancel_scope.cancel()


async def _serve_rest(
    app: ASGIApp,
    config: HypercornConfig,
    *,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    await serve_http(app, config, task_status=task_status)  # type: ignore[arg-type]


def _console(
    home: CoreHome,
    rest_url: str,
    identity: Identity,
    api: IdentityApi,
    store: EventStore,
    bus: LocalBus,
    access_log: AccessLog,
    fleet: FleetApi,
) -> ConsoleContext:
    """The operator console's context; passkeys are bound to the public REST origin."""
    from urllib.parse import urlsplit

    from cloud.console import ConsoleContext
    from cloud.console.security import origin_of
    from cloud.identity.passkeys import PasskeyService, PasskeyStore, RelyingParty

    origin = origin_of(rest_url)
    party = RelyingParty(rp_id=urlsplit(rest_url).hostname or "localhost", origin=origin)
    passkeys = PasskeyService(PasskeyStore(home.db_path), identity.store, identity.sessions, party)

    async def verify(token: str) -> Principal:
        return verify_active(api.issuer, api.registry, token, Audience.REST)

    return ConsoleContext(home, api, store, bus, access_log, passkeys, fleet, origin, verify)


def _bind_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
