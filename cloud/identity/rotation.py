"""Secrets-key rotation: re-seal every stored value under the active key version.

Because the pepper is an encryption (not a keyed hash), rotation needs no user's password:
each sealed Argon2 string and TOTP secret is opened with its old version and sealed again
under the active one. Personnummer indexes cannot be recomputed (the numbers are not
stored), so they stay under their old version, and lookups try every version; an index
version can be removed only after those numbers have been entered again. The procedure is
in docs/security.md, "Key rotation".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cloud.identity.keyring import Keyring
    from cloud.identity.store import IdentityStore


@dataclass(frozen=True, slots=True)
class RewrapReport:
    resealed: int
    old_indexes: int


def rewrap(store: IdentityStore, keyring: Keyring) -> RewrapReport:
    """Re-seal every value not under ``keyring.active``; count indexes on old versions.

    Raises:
        SealError: a value does not open under any key in the file (nothing is changed for
            that user; values already re-sealed stay re-sealed).
    """
    resealed = old_indexes = 0
    for user in store.all_users():
        changes: dict[str, str] = {}
        for column, purpose in (("password", "password"), ("pnr", "pnr"), ("totp_secret", "totp")):
            value = getattr(user, column)
            if value is not None and keyring.needs_reseal(value):
                context = f"{purpose}:{user.user_id}"
                changes[column] = keyring.seal(keyring.open(value, context), context)
        if changes:
            store.update_user(user.user_id, **changes)
            resealed += len(changes)
        if user.pnr_index is not None and not user.pnr_index.startswith(f"{keyring.active}$"):
            old_indexes += 1
    return RewrapReport(resealed, old_indexes)
