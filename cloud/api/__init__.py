"""REST routers for identity and administration, mounted by :func:`cloud.rest.create_rest_app`.

:func:`install` adds the routers and the error handlers for identity errors to the FastAPI
app; every route here follows the contract of :mod:`cloud.rest` (bearer tokens only in the
``Authorization`` header, answers confined to the caller's tenant, JSON errors with the
request id).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cloud.api.common import IdentityApi, install_error_handlers

if TYPE_CHECKING:
    from fastapi import FastAPI

__all__ = ["IdentityApi", "install"]


def install(api: FastAPI, context: IdentityApi) -> None:
    """Mount the identity and admin routes on ``api``."""
    from cloud.api import admin, auth, users

    api.state.identity = context
    install_error_handlers(api)
    for module in (auth, users, admin):
        api.include_router(module.router)
