"""The operator console: server-rendered pages of the core's HTTPS server under ``/console/``.

:func:`create_console_app` builds a Starlette application that :mod:`cloud.rest` mounts. It
calls the core's services in process (identity, registry, event store, bus) with the same
scope checks as the REST routes, and keeps every token on the server
(:mod:`cloud.console.sessions`). Security rules: :mod:`cloud.console.security`.

Not done here: a JSON API (that is :mod:`cloud.rest` and :mod:`cloud.api`).
"""

from __future__ import annotations

from cloud.console.web import ConsoleContext, create_console_app

__all__ = ["ConsoleContext", "create_console_app"]
