"""Secrets at rest: Argon2id + pepper, a DB copy alone verifies nothing, the key is required."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import random
import sqlite3
from pathlib import Path

import pytest
import trio
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from hypothesis import given
from hypothesis import strategies as st

from cloud.home import CoreHome
from cloud.identity import personnummer
from cloud.identity.errors import InvalidPersonnummer, SealError, SecretKeyError
from cloud.identity.hashing import OWASP_FLOOR_KIB_PASSES
from cloud.identity.keyring import add_key_version, load_keyring
from cloud.identity.rotation import rewrap
from cloud.identity.runtime import Identity
from tests.security.conftest import PASSWORD, add_user

VECTORS = Path(__file__).parents[1] / "vectors" / "personnummer"
TODAY = dt.date(2026, 11, 26)
PNR = "811218-9876"


def _rows(home: CoreHome) -> list[tuple[str, str, str]]:
    # A copy of the database, read the way an attacker would: plain sqlite3, no key.
    with sqlite3.connect(home.db_path) as db:
        return list(db.execute("SELECT user_id, password, pnr FROM identity_users"))


def test_stored_password_is_sealed_argon2id_with_unique_salts(
    core_home: CoreHome, identity: Identity
) -> None:
    add_user(identity, "one@example.test")
    add_user(identity, "two@example.test")
    rows = _rows(core_home)
    keyring = load_keyring(core_home.secrets_key)
    salts = set()
    for user_id, sealed, _ in rows:
        assert sealed.startswith("ab1$1$") and "argon2" not in sealed
        phc = keyring.open(sealed, f"password:{user_id}").decode()
        assert phc.startswith("$argon2id$v=19$")
        params = dict(p.split("=") for p in phc.split("$")[3].split(","))
        assert int(params["m"]) * int(params["t"]) >= OWASP_FLOOR_KIB_PASSES
        salts.add(phc.split("$")[4])
    assert len(salts) == 2


def test_a_database_copy_alone_cannot_verify_a_guess(
    core_home: CoreHome, identity: Identity
) -> None:
    add_user(identity, "victim@example.test", pnr=PNR)
    (user_id, sealed_pw, sealed_pnr) = _rows(core_home)[0]
    for value, guess in ((sealed_pw, PASSWORD), (sealed_pnr, "198112189876")):
        with pytest.raises((InvalidHashError, VerificationError)):
            PasswordHasher().verify(value, guess)
    # The key file's bytes appear nowhere in the database.
    raw_keys = [k.hex() for k in load_keyring(core_home.secrets_key).keys.values()]
    dump = core_home.db_path.read_bytes().hex()
    assert not any(k in dump for k in raw_keys)
    # With a different key (an attacker's guess at it) nothing opens either.
    other = load_keyring(core_home.secrets_key)
    object.__setattr__(other, "keys", {1: os.urandom(32)})
    with pytest.raises(SealError):
        other.open(sealed_pw, f"password:{user_id}")


def test_personnummer_brute_force_needs_the_key(core_home: CoreHome, identity: Identity) -> None:
    add_user(identity, "pnr@example.test", pnr=PNR)
    user_id = _rows(core_home)[0][0]
    index = identity.store.user_by_id(user_id).pnr_index
    # 10^4 candidates sharing the date: without the key no hash can even be computed...
    candidates = [f"19811218{n:04d}" for n in range(10_000)]
    import hashlib
    import hmac

    unkeyed = {hashlib.sha256(c.encode()).hexdigest() for c in candidates}
    assert index is not None and index.split("$")[1] not in unkeyed
    assert not any(
        hmac.new(b"", c.encode(), hashlib.sha256).hexdigest() in index for c in candidates
    )
    # ...with the key, the keyed index finds exactly the one.
    keyring = load_keyring(core_home.secrets_key)
    hits = [c for c in candidates if keyring.index(c, "pnr:acme") == index]
    assert hits == ["198112189876"]
    found = identity.service.find_by_personnummer("acme", "19811218-9876")
    assert [u.user_id for u in found] == [user_id]
    assert identity.service.verify_personnummer(found[0], PNR)
    assert not identity.service.verify_personnummer(found[0], "701063-2391")


def test_sealed_value_moved_to_another_user_does_not_open(
    core_home: CoreHome, identity: Identity
) -> None:
    a = add_user(identity, "a@example.test")
    b = add_user(identity, "b@example.test")
    stolen = identity.store.user_by_id(a).password
    identity.store.update_user(b, password=stolen)
    with pytest.raises(SealError):
        identity.service.hasher.verify(stolen or "", PASSWORD, f"password:{b}")


async def test_core_refuses_to_start_without_the_key(core_home: CoreHome) -> None:
    from cloud.app import serve_core

    core_home.secrets_key.unlink()
    with trio.fail_after(10), pytest.raises(SecretKeyError):
        await serve_core(core_home, trio.Event())  # refuses before it listens


async def test_core_refuses_a_key_readable_by_others(core_home: CoreHome) -> None:
    from cloud.app import serve_core

    core_home.secrets_key.chmod(0o644)
    with trio.fail_after(10), pytest.raises(SecretKeyError):
        await serve_core(core_home, trio.Event())  # refuses before it listens


def test_key_file_is_private_and_outside_the_database(core_home: CoreHome) -> None:
    info = core_home.secrets_key.stat()
    assert info.st_mode & 0o777 == 0o600
    assert info.st_uid == os.getuid()
    assert core_home.secrets_key.parent != core_home.db_path.parent


def test_rotation_reseals_under_the_new_version_and_keeps_old_indexes(
    core_home: CoreHome, identity: Identity
) -> None:
    user_id = add_user(identity, "rot@example.test", pnr=PNR)
    version = add_key_version(core_home.secrets_key)
    keyring = load_keyring(core_home.secrets_key)
    report = rewrap(identity.store, keyring)
    assert report.resealed == 2 and report.old_indexes == 1
    user = identity.store.user_by_id(user_id)
    assert user.password is not None and user.password.startswith(f"ab1${version}$")
    identity.service.hasher.keyring = keyring
    identity.service.keyring = keyring
    assert identity.service.hasher.verify(user.password, PASSWORD, f"password:{user_id}")
    assert [u.user_id for u in identity.service.find_by_personnummer("acme", PNR)] == [user_id]


# --- personnummer ----------------------------------------------------------------------------


def _load(name: str) -> list[dict[str, object]]:
    data: list[dict[str, object]] = json.loads((VECTORS / name).read_text(encoding="utf-8"))
    return data


@pytest.mark.parametrize("vector", _load("valid.json"), ids=lambda v: str(v["text"]))
def test_valid_personnummer_vectors(vector: dict[str, object]) -> None:
    parsed = personnummer.parse(str(vector["text"]), today=TODAY)
    assert parsed.canonical == vector["expect"]
    assert parsed.coordination is vector["coordination"]


@pytest.mark.parametrize("vector", _load("invalid.json"), ids=lambda v: str(v["source"]))
def test_invalid_personnummer_vectors(vector: dict[str, object]) -> None:
    with pytest.raises(InvalidPersonnummer):
        personnummer.parse(str(vector["text"]), today=TODAY)


@pytest.mark.parametrize("vector", _load("valid.json"), ids=lambda v: str(v["text"]))
def test_every_truncation_of_a_valid_number_is_refused(vector: dict[str, object]) -> None:
    text = str(vector["text"])
    for end in range(len(text)):
        with pytest.raises(InvalidPersonnummer):
            personnummer.parse(text[:end], today=TODAY)


@given(st.dates(min_value=dt.date(1900, 1, 1), max_value=TODAY), st.integers(0, 999))
def test_generated_numbers_round_trip(born: dt.date, serial: int) -> None:
    body = f"{born:%y%m%d}{serial:03d}"
    text = f"{born.year}{body[2:]}{personnummer.luhn_digit(body)}"
    assert personnummer.parse(text, today=TODAY).canonical == text


def test_fuzz_any_string_gives_a_number_or_our_error() -> None:
    seed = int(os.environ.get("FUZZ_SEED", random.randrange(2**32)))
    print(f"FUZZ_SEED={seed}")
    rng = random.Random(seed)
    alphabet = "0123456789-+ \u0660x"
    for _ in range(5000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 16)))
        with contextlib.suppress(InvalidPersonnummer):  # any other exception fails the test
            personnummer.parse(text, today=TODAY)
