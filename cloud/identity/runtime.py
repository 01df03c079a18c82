"""Wiring: build the identity service for a core home, and the Trio task that runs beside it.

Contract: :func:`open_identity` loads the secrets key first, from the store ``[secrets]``
in ``config.toml`` names (the key file by default, or a PKCS#11 token), and raises
:class:`~cloud.identity.errors.SecretKeyError` when it is missing, too open, or the token,
its PIN or its keys are absent, so a core built with it refuses to start instead of storing
secrets without the pepper.
:func:`serve_identity` runs the mailer and connects session revocation to the link server
(``disconnect`` closes every live WebSocket of the revoked token ids at once).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import trio

from cloud.home import load_config
from cloud.identity.hashing import SecretHasher
from cloud.identity.keyring import Keyring, load_keyring
from cloud.identity.mail import Mailer, load_smtp_config
from cloud.identity.service import IdentityService
from cloud.identity.sessions import SessionManager
from cloud.identity.store import IdentityStore

if TYPE_CHECKING:
    from cloud.accesslog import AccessLog
    from cloud.home import CoreHome
    from cloud.registry import Registry
    from cloud.tokens import TokenIssuer

Disconnect = Callable[[Sequence[str]], Awaitable[object]]


@dataclass(frozen=True, slots=True)
class Identity:
    service: IdentityService
    sessions: SessionManager
    mailer: Mailer
    store: IdentityStore


def open_identity(
    home: CoreHome,
    registry: Registry,
    issuer: TokenIssuer,
    access_log: AccessLog,
    *,
    now: Callable[[], float] = time.time,
) -> Identity:
    """Raises: SecretKeyError (no usable key), ConfigError (bad ``[smtp]``)."""
    keyring = load_secrets_keyring(home)
    mailer = Mailer(load_smtp_config(home), access_log)
    store = IdentityStore(home.db_path)
    sessions = SessionManager(store, registry, issuer, now=now)
    service = IdentityService(
        store, registry, SecretHasher(keyring), sessions, notify=mailer.enqueue, now=now
    )
    return Identity(service, sessions, mailer, store)


def load_secrets_keyring(home: CoreHome) -> Keyring:
    """The keyring ``[secrets]`` selects. Raises: SecretKeyError, ConfigError."""
    secrets = load_config(home).secrets
    if secrets.backend == "pkcs11":
        from cloud.identity.pkcs11_keyring import open_pkcs11_keyring

        return open_pkcs11_keyring(secrets)
    return load_keyring(home.secrets_key)


async def serve_identity(
    identity: Identity,
    disconnect: Disconnect,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Send mail and close revoked sessions' links until cancelled."""
    token = trio.lowlevel.current_trio_token()
    async with trio.open_nursery() as nursery:

        def on_revoked(jtis: Sequence[str]) -> None:
            # Called from worker threads (and the Trio thread): hop onto the event loop.
            token.run_sync_soon(nursery.start_soon, disconnect, tuple(jtis))

        identity.sessions.on_revoked = on_revoked
        await nursery.start(identity.mailer.serve)
        task_status.started()
        try:
            await trio.sleep_forever()
        finally:
            identity.store.close()
