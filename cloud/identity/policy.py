"""Password policies per tenant: two presets, tunable, and a check that names every failed rule.

Presets:

* ``seed`` (the default, from the product's security overview): at least 8 characters, at
  least one digit and one special character, and no 3-character sequence taken from the
  user's email or name, compared case-insensitively.
* ``nist`` (NIST SP 800-63B §3.1.1.2): length only (at least 15 when the password is the
  only factor is the standard's advice; the preset uses 15) and the blocklist; no
  composition rules.

Both add what the standards require and the seed does not forbid: a blocklist of common and
breached passwords shipped with the product (whole-password comparison, case-insensitive;
800-63B §3.1.1.2 item 4), at least 64 characters accepted (``max_length`` may not be set
below 64), no truncation, and any Unicode (length counts code points, after NFC
normalisation, as 800-63B §3.1.1.2 item 8 recommends). Context words (tenant name, email
local part) are refused as whole passwords under every preset.

Contract: :func:`check` is pure and returns every rule the password breaks, as stable ids
(``too_short``, ``too_long``, ``needs_digit``, ``needs_special``, ``contains_personal_info``,
``blocklisted``, ``context_word``), in that order. The blocklist is loaded once from
``data/common-passwords.txt`` by :func:`load_blocklist`; nothing is fetched at run time.
"""

from __future__ import annotations

import unicodedata
from dataclasses import asdict, dataclass, replace
from functools import cache
from importlib import resources
from typing import Any

from cloud.errors import InvalidInput

#: 800-63B §3.1.1.2 item 2: verifiers SHOULD permit at least 64 characters.
MIN_MAX_LENGTH = 64
#: Refuse absurd inputs before hashing them (hashing DoS, OWASP Password Storage CS).
HARD_MAX_LENGTH = 1024
RULES = (
    "too_short",
    "too_long",
    "needs_digit",
    "needs_special",
    "contains_personal_info",
    "blocklisted",
    "context_word",
)


@dataclass(frozen=True, slots=True)
class PasswordPolicy:
    """One tenant's password rules."""

    preset: str = "seed"
    min_length: int = 8
    max_length: int = 128
    require_digit: bool = True
    require_special: bool = True
    forbid_personal_sequences: bool = True
    sequence_length: int = 3
    use_blocklist: bool = True

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


SEED_PRESET = PasswordPolicy()
NIST_PRESET = PasswordPolicy(
    preset="nist",
    min_length=15,
    max_length=128,
    require_digit=False,
    require_special=False,
    forbid_personal_sequences=False,
)
PRESETS = {"seed": SEED_PRESET, "nist": NIST_PRESET}


def make_policy(preset: str = "seed", **overrides: Any) -> PasswordPolicy:
    """A preset, tuned by ``overrides``.

    Raises:
        InvalidInput: unknown preset or setting, or a value out of range.
    """
    if preset not in PRESETS:
        raise InvalidInput(f"unknown password preset {preset!r}; use one of {sorted(PRESETS)}")
    known = set(SEED_PRESET.to_dict()) - {"preset"}
    unknown = set(overrides) - known
    if unknown:
        raise InvalidInput(f"unknown password settings {sorted(unknown)}")
    policy = replace(PRESETS[preset], **overrides)
    _validate(policy)
    return policy


def policy_from_dict(data: dict[str, Any]) -> PasswordPolicy:
    """Inverse of :meth:`PasswordPolicy.to_dict` (validated)."""
    values = dict(data)
    return make_policy(str(values.pop("preset", "seed")), **values)


def _validate(policy: PasswordPolicy) -> None:
    ints = ("min_length", "max_length", "sequence_length")
    bools = ("require_digit", "require_special", "forbid_personal_sequences", "use_blocklist")
    for name in ints:
        value = getattr(policy, name)
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidInput(f"{name} must be an integer")
    for name in bools:
        if not isinstance(getattr(policy, name), bool):
            raise InvalidInput(f"{name} must be true or false")
    if not 8 <= policy.min_length <= MIN_MAX_LENGTH:
        raise InvalidInput("min_length must be 8..64 (800-63B: at least 8)")
    if not MIN_MAX_LENGTH <= policy.max_length <= HARD_MAX_LENGTH:
        raise InvalidInput(f"max_length must be {MIN_MAX_LENGTH}..{HARD_MAX_LENGTH}")
    if not 3 <= policy.sequence_length <= 8:
        raise InvalidInput("sequence_length must be 3..8")


def normalise(password: str) -> str:
    """NFC form: the same password typed on different systems gives the same bytes."""
    return unicodedata.normalize("NFC", password)


def check(
    policy: PasswordPolicy,
    password: str,
    *,
    email: str = "",
    name: str = "",
    context: tuple[str, ...] = (),
    blocklist: frozenset[str] | None = None,
) -> tuple[str, ...]:
    """Every rule ``password`` breaks (empty when it is acceptable).

    Args:
        policy: the tenant's policy.
        password: the candidate, as typed.
        email, name: the user's, for the personal-sequence rule.
        context: extra words refused as whole passwords (tenant name, service name).
        blocklist: lower-cased common passwords (default: the shipped list).
    """
    pw = normalise(password)
    failed: list[str] = []
    if len(pw) < policy.min_length:
        failed.append("too_short")
    if len(pw) > policy.max_length:
        failed.append("too_long")
    if policy.require_digit and not any(ch.isdigit() for ch in pw):
        failed.append("needs_digit")
    if policy.require_special and all(ch.isalnum() for ch in pw):
        failed.append("needs_special")
    if policy.forbid_personal_sequences and _shares_sequence(
        pw, (email, name), policy.sequence_length
    ):
        failed.append("contains_personal_info")
    folded = pw.casefold()
    if policy.use_blocklist and folded in (load_blocklist() if blocklist is None else blocklist):
        failed.append("blocklisted")
    if folded in _context_words(email, name, context):
        failed.append("context_word")
    return tuple(failed)


def _shares_sequence(password: str, sources: tuple[str, ...], n: int) -> bool:
    # The seed's rule: no n-character run of the email or the name appears in the password,
    # case-insensitively. Runs are taken from each name part and from the email's local part
    # and domain separately, so "a.b" does not forbid every password containing a dot.
    folded = password.casefold()
    for source in sources:
        for part in _parts(source.casefold()):
            if any(part[i : i + n] in folded for i in range(len(part) - n + 1)):
                return True
    return False


def _parts(text: str) -> list[str]:
    for sep in "@._-+ ":
        text = text.replace(sep, " ")
    return [p for p in text.split() if p]


def _context_words(email: str, name: str, context: tuple[str, ...]) -> set[str]:
    words = {w.casefold() for w in context if w}
    words |= {"assetbook", email.casefold(), email.split("@", 1)[0].casefold(), name.casefold()}
    return {w for w in words if w}


@cache
def load_blocklist() -> frozenset[str]:
    """The shipped list of common and breached passwords, lower-cased."""
    text = (
        resources.files("cloud.identity")
        .joinpath("data/common-passwords.txt")
        .read_text(encoding="utf-8")
    )
    return frozenset(
        line.strip().casefold() for line in text.splitlines() if line and not line.startswith("#")
    )
