"""Password and personnummer hashing: Argon2id with a unique salt, then sealed (the pepper).

Parameters (OWASP Password Storage Cheat Sheet, Argon2id; RFC 9106 §4): ``m = 32 MiB,
t = 2, p = 1``, a 16-byte random salt per value and a 32-byte tag. The cheat sheet's floor
is m = 19 MiB, t = 2, p = 1 (memory x passes = 38,912 KiB); ours is 65,536 KiB, 1.7 times
the floor, and takes about 60-90 ms on a 2-core x86-64 machine (docs/security.md).

The stored value is ``Keyring.seal(<PHC string>)``: without the key outside the database the
Argon2 string, and with it the salt, is not even visible, so a copy of the database alone
cannot be used to test a guess (800-63B §3.1.1.2: "an additional iteration of a keyed
hashing or encryption operation using a secret key known only to the verifier").

Contract: :class:`SecretHasher.verify` returns ``True`` or ``False`` and never raises for a
wrong guess; a value that will not open raises :class:`~cloud.identity.errors.SealError`.
:meth:`SecretHasher.dummy_verify` costs the same as a real verification and is used when
there is no real value to check (unknown user), so timing does not tell them apart.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from cloud.identity.policy import normalise

if TYPE_CHECKING:
    from cloud.identity.keyring import Keyring

TIME_COST = 2
MEMORY_COST_KIB = 32 * 1024
PARALLELISM = 1
SALT_BYTES = 16
HASH_BYTES = 32
#: OWASP Password Storage Cheat Sheet floor for Argon2id, in KiB x passes (19 MiB, t = 2).
OWASP_FLOOR_KIB_PASSES = 19 * 1024 * 2


@dataclass(frozen=True, slots=True)
class Argon2Params:
    time_cost: int = TIME_COST
    memory_cost_kib: int = MEMORY_COST_KIB
    parallelism: int = PARALLELISM


class SecretHasher:
    """Hashes and verifies low-entropy secrets under a keyring."""

    def __init__(self, keyring: Keyring, params: Argon2Params | None = None) -> None:
        params = params or Argon2Params()
        self.keyring = keyring
        self._argon = PasswordHasher(
            time_cost=params.time_cost,
            memory_cost=params.memory_cost_kib,
            parallelism=params.parallelism,
            hash_len=HASH_BYTES,
            salt_len=SALT_BYTES,
            type=Type.ID,
        )
        self._dummy = self._argon.hash("assetbook dummy secret")
        # Sealed once so that dummy_verify also pays for the AES-GCM open.
        self._dummy_sealed = keyring.seal(self._dummy.encode(), "dummy")

    def hash(self, secret: str, context: str) -> str:
        """Argon2id of ``secret`` (NFC-normalised), sealed for ``context``."""
        phc = self._argon.hash(normalise(secret))
        return self.keyring.seal(phc.encode("ascii"), context)

    def verify(self, stored: str, secret: str, context: str) -> bool:
        """Whether ``secret`` matches the sealed hash ``stored``.

        Raises:
            SealError: ``stored`` does not open under our keys for this context.
        """
        phc = self.keyring.open(stored, context).decode("ascii")
        try:
            return self._argon.verify(phc, normalise(secret))
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def needs_update(self, stored: str, context: str) -> bool:
        """True if ``stored`` should be re-hashed (parameters) or re-sealed (key version)."""
        if self.keyring.needs_reseal(stored):
            return True
        return self._argon.check_needs_rehash(self.keyring.open(stored, context).decode())

    def dummy_verify(self, secret: str) -> None:
        """Spend the time of a verification without a real value (unknown accounts)."""
        phc = self.keyring.open(self._dummy_sealed, "dummy").decode("ascii")
        with contextlib.suppress(VerifyMismatchError, VerificationError, InvalidHashError):
            self._argon.verify(phc, normalise(secret))
