"""The secrets key in a PKCS#11 token (SoftHSM2 standing in for the secure element).

Each test gets its own SoftHSM2 token directory under ``tmp_path`` (``SOFTHSM2_CONF``); the
module is finalized after each test so the next one reads its own configuration.
"""

from __future__ import annotations

import sqlite3
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pkcs11
import pytest
import tomli_w
import trio
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from cloud.accesslog import AccessLog
from cloud.errors import ConfigError
from cloud.home import CoreHome, SecretsConfig, load_config
from cloud.identity.errors import SealError, SecretKeyError
from cloud.identity.pkcs11_keyring import (
    INDEX_LABEL,
    SEAL_LABEL,
    Pkcs11Keyring,
    add_key_version,
    open_pkcs11_keyring,
    release_module,
    remove_key_version,
)
from cloud.identity.rotation import rewrap
from cloud.identity.runtime import Identity, open_identity
from cloud.registry import Registry
from cloud.tokens import TokenIssuer
from tests.security.conftest import PASSWORD, add_user
from tests.support import softhsm_token

TOKEN = "assetbook-test"
PIN = "1234-test-pin"
PNR = "811218-9876"


@pytest.fixture
def token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SecretsConfig]:
    """An initialised, empty token in a private SoftHSM2 directory; its PIN in a 0600 file."""
    module, pin_file = softhsm_token(tmp_path, monkeypatch, TOKEN, PIN)
    release_module(module)  # a previous test's configuration must not linger
    yield SecretsConfig("pkcs11", module, TOKEN, str(pin_file), None)
    release_module(module)


@pytest.fixture
def keyring(token: SecretsConfig) -> Iterator[Pkcs11Keyring]:
    add_key_version(token)
    ring = open_pkcs11_keyring(token)
    yield ring
    ring.close()


def _use_token(home: CoreHome, config: SecretsConfig) -> None:
    data = tomllib.loads(home.config_path.read_text())
    data["secrets"] = {
        "backend": "pkcs11",
        "pkcs11_module": config.pkcs11_module,
        "token_label": config.token_label,
        "pin_file": config.pin_file,
    }
    home.config_path.write_text(tomli_w.dumps(data))


def _token_keyring(identity: Identity) -> Pkcs11Keyring:
    ring = identity.service.keyring
    assert isinstance(ring, Pkcs11Keyring)
    return ring


def _close(identity: Identity) -> None:
    identity.store.close()
    _token_keyring(identity).close()


def test_seal_open_round_trip_inside_the_token(keyring: Pkcs11Keyring) -> None:
    sealed = keyring.seal(b"$argon2id$v=19$...", "password:u1")
    assert sealed.startswith("ab1$1$")
    assert keyring.open(sealed, "password:u1") == b"$argon2id$v=19$..."
    assert keyring.seal(b"x", "c") != keyring.seal(b"x", "c")  # fresh nonce each time
    with pytest.raises(SealError):
        keyring.open(sealed, "password:u2")  # context is bound as associated data
    tampered = sealed[:-2] + ("A" if sealed[-2] != "A" else "B") + sealed[-1]
    with pytest.raises(SealError):
        keyring.open(tampered, "password:u1")
    assert keyring.index("19811218-9876", "pnr:acme") == keyring.index("19811218-9876", "pnr:acme")
    assert keyring.index("v", "pnr:acme") != keyring.index("v", "pnr:other")
    assert keyring.mac(b"v", "pnr:acme").split("$")[1] != keyring.index("v", "pnr:acme")[2:]


def test_the_key_cannot_be_extracted(token: SecretsConfig, keyring: Pkcs11Keyring) -> None:
    assert keyring.keys == {}  # no raw key material outside the token
    for label in (SEAL_LABEL.format(1), INDEX_LABEL.format(1)):
        key = keyring.session.get_key(label=label)  # the logged-in session itself
        assert key[pkcs11.Attribute.SENSITIVE] is True
        assert key[pkcs11.Attribute.EXTRACTABLE] is False
        with pytest.raises(pkcs11.exceptions.PKCS11Error):
            key[pkcs11.Attribute.VALUE]
    # Nor can a fresh rotation version be read back by whoever holds the PIN.
    add_key_version(token)
    key = keyring.session.get_key(label=SEAL_LABEL.format(2))
    with pytest.raises(pkcs11.exceptions.PKCS11Error):
        key[pkcs11.Attribute.VALUE]


def test_a_database_copy_alone_cannot_verify_a_guess(
    core_home: CoreHome, token: SecretsConfig
) -> None:
    add_key_version(token)
    _use_token(core_home, token)
    with Registry(core_home.db_path) as registry:
        identity = open_identity(
            core_home, registry, TokenIssuer(core_home), AccessLog(core_home.logs_dir / "t.jsonl")
        )
        try:
            user_id = add_user(identity, "victim@example.test", pnr=PNR)
            assert identity.service.find_by_personnummer("acme", PNR)[0].user_id == user_id
        finally:
            _close(identity)
    with sqlite3.connect(core_home.db_path) as db:
        (sealed_pw, sealed_pnr) = db.execute("SELECT password, pnr FROM identity_users").fetchone()
    for value, guess in ((sealed_pw, PASSWORD), (sealed_pnr, "198112189876")):
        assert value.startswith("ab1$1$") and "argon2" not in value
        with pytest.raises((InvalidHashError, VerificationError)):
            PasswordHasher().verify(value, guess)


def test_rotation_across_versions(core_home: CoreHome, token: SecretsConfig) -> None:
    add_key_version(token)
    _use_token(core_home, token)
    with Registry(core_home.db_path) as registry:
        issuer, log = TokenIssuer(core_home), AccessLog(core_home.logs_dir / "t.jsonl")
        old = open_identity(core_home, registry, issuer, log)
        user_id = add_user(old, "rot@example.test", pnr=PNR)
        _close(old)

        assert add_key_version(token) == 2
        new = open_identity(core_home, registry, issuer, log)
        try:
            ring = _token_keyring(new)
            assert ring.active == 2 and ring.versions == {1, 2}
            report = rewrap(new.store, ring)
            assert report.resealed == 2 and report.old_indexes == 1
            user = new.store.user_by_id(user_id)
            assert user.password is not None and user.password.startswith("ab1$2$")
            assert new.service.hasher.verify(user.password, PASSWORD, f"password:{user_id}")
            assert [u.user_id for u in new.service.find_by_personnummer("acme", PNR)] == [user_id]
            with pytest.raises(SecretKeyError):
                remove_key_version(token, 2)  # the active version stays
        finally:
            _close(new)
        remove_key_version(token, 1)
        ring = open_pkcs11_keyring(token)
        try:
            assert ring.versions == {2}
            assert ring.open(user.password, f"password:{user_id}").startswith(b"$argon2id$")
            with pytest.raises(SealError):
                ring.open(ring.seal(b"x", "c").replace("ab1$2$", "ab1$1$"), "c")
        finally:
            ring.close()


async def test_core_refuses_to_start_without_the_token(
    core_home: CoreHome, token: SecretsConfig
) -> None:
    from cloud.app import serve_core

    _use_token(core_home, token)  # the token exists but holds no key yet
    with trio.fail_after(10), pytest.raises(SecretKeyError, match="holds no secrets key"):
        await serve_core(core_home, trio.Event())
    missing = SecretsConfig("pkcs11", token.pkcs11_module, "no-such-token", token.pin_file, None)
    _use_token(core_home, missing)
    with trio.fail_after(10), pytest.raises(SecretKeyError, match="no PKCS#11 token"):
        await serve_core(core_home, trio.Event())


def test_wrong_pin_is_refused_without_echoing_it(token: SecretsConfig, tmp_path: Path) -> None:
    add_key_version(token)
    wrong = tmp_path / "wrong-pin"
    wrong.write_text("0000-not-it\n")
    wrong.chmod(0o600)
    config = SecretsConfig("pkcs11", token.pkcs11_module, TOKEN, str(wrong), None)
    with pytest.raises(SecretKeyError) as caught:
        open_pkcs11_keyring(config)
    assert "0000-not-it" not in str(caught.value)
    wrong.chmod(0o644)
    with pytest.raises(SecretKeyError, match="mode 0600"):
        open_pkcs11_keyring(config)


def test_pin_from_the_environment(token: SecretsConfig, monkeypatch: pytest.MonkeyPatch) -> None:
    add_key_version(token)
    config = SecretsConfig("pkcs11", token.pkcs11_module, TOKEN, None, "ASSETBOOK_TEST_PIN")
    with pytest.raises(SecretKeyError, match="ASSETBOOK_TEST_PIN is not set"):
        open_pkcs11_keyring(config)
    monkeypatch.setenv("ASSETBOOK_TEST_PIN", PIN)
    ring = open_pkcs11_keyring(config)
    try:
        assert ring.open(ring.seal(b"ok", "c"), "c") == b"ok"
    finally:
        ring.close()


def test_secrets_config_section(core_home: CoreHome) -> None:
    assert load_config(core_home).secrets == SecretsConfig()  # `core init`: the key file
    assert "secrets" not in tomllib.loads(core_home.config_path.read_text())
    data = tomllib.loads(core_home.config_path.read_text())
    for table, key in (
        ({"backend": "hsm"}, "secrets.backend"),
        ({"backend": "pkcs11", "pkcs11_module": "/m.so", "token_label": "t"}, "secrets"),
        ({"backend": "file", "token_label": "t"}, "secrets.token_label"),
        ({"backend": "pkcs11", "pin": "1234"}, "secrets.pin"),  # never in config.toml
    ):
        core_home.config_path.write_text(tomli_w.dumps({**data, "secrets": table}))
        with pytest.raises(ConfigError) as caught:
            load_config(core_home)
        assert caught.value.key == key
