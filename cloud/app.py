"""The core process: link server and REST API over one store, bus and access log.

:func:`serve_core` opens everything a core home describes, serves until ``stop`` is set (or
the task is cancelled) and closes the store only after in-flight commits have finished.
Token checks happen on the event loop: verifying an EdDSA signature and one indexed SQLite
read for revocation take tens of microseconds, once per connection or request.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve as serve_http

from cloud.accesslog import AccessLog
from cloud.bus import LocalBus
from cloud.home import load_config
from cloud.link import LinkServer
from cloud.pki import server_ssl_context
from cloud.registry import Registry, verify_active
from cloud.rest import create_rest_app
from cloud.storage.sqlite import open_sqlite_store
from cloud.tokens import Audience, TokenIssuer

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from starlette.types import ASGIApp

    from cloud.home import CoreHome
    from cloud.principal import Principal

log = logging.getLogger(__name__)

EVENTS_DB = "events.sqlite"


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
    access_log = AccessLog(home.access_log)
    ssl_context = server_ssl_context(home)
    with Registry(home.db_path) as registry:

        def authenticator(audience: Audience) -> Callable[[str], Awaitable[Principal]]:
            async def authenticate(token: str) -> Principal:
                return verify_active(issuer, registry, token, audience)

            return authenticate

        async with open_sqlite_store(home.db_dir / EVENTS_DB) as store:
            bus = LocalBus()
            link = LinkServer(
                authenticate=authenticator(Audience.LINK),
                store=store,
                bus=bus,
                access_log=access_log,
            )
            rest = create_rest_app(store, authenticator(Audience.REST), access_log)
            http = HypercornConfig()
            http.bind = [f"{_bind_host(config.listen_host)}:{config.rest_port}"]
            http.certfile = str(home.server_cert)
            http.keyfile = str(home.server_key)
            http.include_server_header = False
            http.accesslog = None  # our own access log records every request
            http.errorlog = logging.getLogger("cloud.http")
            async with trio.open_nursery() as nursery:
                await nursery.start(link.serve, config.listen_host, config.link_port, ssl_context)
                await nursery.start(_serve_rest, rest, http)
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


def _bind_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
