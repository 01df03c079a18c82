"""Password policies: the seed preset, the NIST preset, blocklist, length, Unicode, REST."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cloud.errors import InvalidInput
from cloud.identity.hashing import SecretHasher
from cloud.identity.keyring import Keyring
from cloud.identity.policy import NIST_PRESET, SEED_PRESET, check, load_blocklist, make_policy
from cloud.identity.runtime import Identity
from tests.security.conftest import add_user, bearer, client, tokens
from tests.support import RunningCore

EMAIL = "maria.lindqvist@example.test"
NAME = "Maria Lindqvist"


@pytest.mark.parametrize(
    ("password", "failed"),
    [
        # The seed: >= 8 characters, a digit, a special, no 3-char run of email or name.
        ("Gx7#kq", ("too_short",)),
        ("Gxkq#vbnw", ("needs_digit",)),
        ("Gx7kqvbnw", ("needs_special",)),
        ("Lin#7kqvbnw", ("contains_personal_info",)),  # "lin" from the name, any case
        ("Gx7#AMPkqw", ("contains_personal_info",)),  # "amp" from the email's domain
        ("Gx7#kqvbnw", ()),
        ("p@ssw0rd", ("blocklisted",)),  # in the shipped list, has digit and special
        ("Password1!", ()),  # not in the list: the list is whole-password, not substrings
    ],
)
def test_seed_preset_names_each_failed_rule(password: str, failed: tuple[str, ...]) -> None:
    assert check(SEED_PRESET, password, email=EMAIL, name=NAME) == failed


def test_nist_preset_has_no_composition_rules_but_a_longer_minimum() -> None:
    assert check(NIST_PRESET, "correct horse battery staple") == ()
    assert check(NIST_PRESET, "shortpassphrase") == ()  # 15 characters
    assert check(NIST_PRESET, "shortpassphras") == ("too_short",)
    assert check(NIST_PRESET, "baseball1234567") == ()
    # An entry of the shipped list long enough for the preset; any case.
    assert check(NIST_PRESET, "1QAZ2wsx3edc4rfv") == ("blocklisted",)


def test_context_words_are_refused_whole() -> None:
    assert "context_word" in check(NIST_PRESET, "acme-industries", context=("acme-industries",))
    assert "context_word" in check(
        NIST_PRESET, "maria.lindqvist@example.test", email="maria.lindqvist@example.test"
    )


def test_long_and_unicode_passwords_are_accepted_and_counted_in_code_points() -> None:
    for length in (64, 128):
        assert check(SEED_PRESET, "k7#" + "x" * (length - 3)) == ()
    # Eight code points (23 bytes of UTF-8) meet the minimum of 8; seven do not.
    assert check(SEED_PRESET, "🔐🦆7#snöø") == ()
    assert check(SEED_PRESET, "🔐🦆7#snö") == ("too_short",)
    # NFC: the decomposed and composed forms of "ö" are the same password.
    assert check(SEED_PRESET, "🔐🦆7#sno\u0308ø") == ()
    assert check(SEED_PRESET, "k7#" + "x" * 126) == ("too_long",)


def test_blocklist_is_shipped_and_reasonably_sized() -> None:
    words = load_blocklist()
    assert len(words) >= 3000  # ASVS 5.0.0 §6.2.4: at least the top 3000
    assert {"password", "12345678", "qwertyuiop"} <= words


def test_tuning_is_validated() -> None:
    assert make_policy("nist", min_length=20).min_length == 20
    with pytest.raises(InvalidInput):
        make_policy("seed", min_length=4)  # below the 800-63B floor
    with pytest.raises(InvalidInput):
        make_policy("seed", max_length=32)  # at least 64 must be allowed
    with pytest.raises(InvalidInput):
        make_policy("seed", surprise=True)
    with pytest.raises(InvalidInput):
        make_policy("lax")


FAST = {"time_cost": 1, "memory_cost_kib": 8, "parallelism": 1}


@settings(max_examples=25, deadline=None)
@given(st.text(min_size=1, max_size=80))
def test_any_unicode_password_round_trips_without_truncation(password: str) -> None:
    from cloud.identity.hashing import Argon2Params

    hasher = SecretHasher(Keyring(1, {1: b"k" * 32}), Argon2Params(1, 8, 1))
    stored = hasher.hash(password, "password:u-1")
    assert hasher.verify(stored, password, "password:u-1")
    assert not hasher.verify(stored, password + "x", "password:u-1")
    assert not hasher.verify(stored, password[:-1], "password:u-1") or password[:-1] == password


def test_a_64_character_password_verifies_only_when_entered_exactly() -> None:
    from cloud.identity.hashing import Argon2Params

    hasher = SecretHasher(Keyring(1, {1: b"k" * 32}), Argon2Params(1, 8, 1))
    password = "a1#" + "b" * 61
    stored = hasher.hash(password, "password:u-1")
    assert hasher.verify(stored, password, "password:u-1")
    assert not hasher.verify(stored, password[:-1] + "c", "password:u-1")
    assert not hasher.verify(stored, password[:63], "password:u-1")


async def test_rest_rejection_says_which_rule_failed_and_tenants_tune_policy(
    secure_core: RunningCore, identity: Identity
) -> None:
    from cloud.identity.roles import Role

    add_user(identity, "boss@example.test", Role.TENANT_ADMIN)
    async with client(secure_core, "127.0.0.31") as http:
        admin = bearer((await tokens(http, "boss@example.test"))["access_token"])
        weak = await http.post(
            "/api/v1/users",
            headers=admin,
            json={"email": "new@example.test", "name": "New Person", "password": "password"},
        )
        assert weak.status_code == 400
        assert weak.json()["error"] == "password_policy"
        assert weak.json()["rules"] == ["needs_digit", "needs_special", "blocklisted"]
        changed = await http.put(
            "/api/v1/tenant/settings",
            headers=admin,
            json={"password_policy": {"preset": "nist", "min_length": 16}, "login": {}},
        )
        assert changed.status_code == 200, changed.text
        assert changed.json()["password_policy"]["require_digit"] is False
        passphrase = await http.post(
            "/api/v1/users",
            headers=admin,
            json={"email": "new@example.test", "name": "New Person", "password": "vivid quokka rb"},
        )
        assert passphrase.json()["rules"] == ["too_short"]
        accepted = await http.post(
            "/api/v1/users",
            headers=admin,
            json={
                "email": "new@example.test",
                "name": "New Person",
                "password": "vivid quokka orbits",
            },
        )
        assert accepted.status_code == 201, accepted.text
        assert set(accepted.json()) == {
            "user_id", "email", "name", "role", "disabled", "totp_enabled",
            "has_personnummer", "locked",
        }  # fmt: skip
        bad_setting = await http.put(
            "/api/v1/tenant/settings",
            headers=admin,
            json={"password_policy": {"preset": "seed", "$where": 1}, "login": {}},
        )
        assert bad_setting.status_code == 400
