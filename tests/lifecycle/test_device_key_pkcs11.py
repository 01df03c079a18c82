"""The gateway's device key in a PKCS#11 token (SoftHSM2 standing in for the secure element).

Each test gets its own SoftHSM2 token directory under ``tmp_path`` (``SOFTHSM2_CONF``); the
module is finalized after each test so the next one reads its own configuration.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import jwt
import pkcs11
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ed25519
from pkcs11 import Attribute, ObjectClass
from pkcs11.exceptions import AttributeSensitive, UserAlreadyLoggedIn

from cloud.fleet.dpop import ReplayCache, b64url, make_proof, thumbprint, verify_proof
from cloud.identity.pkcs11_keyring import release_module
from gateway.config import DeviceKeyConfig, load_config, write_config
from gateway.device_key import DeviceKeyError, FileKeyStore, open_key_store
from gateway.device_key_pkcs11 import KEY_LABEL, Pkcs11KeyStore
from gateway.errors import ConfigError
from tests.support import softhsm_token

TOKEN = "gateway-test"
PIN = "4321-test-pin"
URL = "https://core.example:8443/api/v1/enrol"


@pytest.fixture
def device_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[DeviceKeyConfig]:
    """An initialised, empty token in a private SoftHSM2 directory; its PIN in a 0600 file."""
    module, pin_file = softhsm_token(tmp_path, monkeypatch, TOKEN, PIN)
    release_module(module)  # a previous test's configuration must not linger
    yield DeviceKeyConfig("pkcs11", Path(module), TOKEN, pin_file, None)
    release_module(module)


def _session(config: DeviceKeyConfig) -> pkcs11.Session:
    token = pkcs11.lib(str(config.pkcs11_module)).get_token(token_label=TOKEN)
    try:
        return token.open(user_pin=PIN)
    except UserAlreadyLoggedIn:  # the store's own session holds the login for this process
        return token.open()


def _objects(config: DeviceKeyConfig, kind: ObjectClass) -> list[pkcs11.Object]:
    with _session(config) as session:
        return list(session.get_objects({Attribute.CLASS: kind, Attribute.LABEL: KEY_LABEL}))


def test_key_is_created_once_and_reused(device_key: DeviceKeyConfig) -> None:
    first = Pkcs11KeyStore(device_key).load_or_create()
    second = Pkcs11KeyStore(device_key).load_or_create()
    assert first.public_jwk() == second.public_jwk()
    assert first.public_jwk()["kty"] == "OKP"
    assert first.public_jwk()["crv"] == "Ed25519"
    assert thumbprint(first.public_jwk()) == thumbprint(second.public_jwk())
    assert len(_objects(device_key, ObjectClass.PRIVATE_KEY)) == 1
    assert len(_objects(device_key, ObjectClass.PUBLIC_KEY)) == 1


def test_private_key_is_sensitive_and_not_extractable(device_key: DeviceKeyConfig) -> None:
    Pkcs11KeyStore(device_key).load_or_create()
    with _session(device_key) as session:
        query = {Attribute.CLASS: ObjectClass.PRIVATE_KEY, Attribute.LABEL: KEY_LABEL}
        (private,) = list(session.get_objects(query))
        assert private[Attribute.SENSITIVE] is True
        assert private[Attribute.EXTRACTABLE] is False
        assert private[Attribute.NEVER_EXTRACTABLE] is True
        assert private[Attribute.TOKEN] is True
        with pytest.raises(AttributeSensitive):
            private[Attribute.VALUE]


def test_signatures_verify_with_the_exported_public_key(device_key: DeviceKeyConfig) -> None:
    signer = Pkcs11KeyStore(device_key).load_or_create()
    public = ed25519.Ed25519PublicKey.from_public_bytes(
        jwt.utils.base64url_decode(signer.public_jwk()["x"])
    )
    signature = signer.sign(b"device key message")
    public.verify(signature, b"device key message")
    with pytest.raises(InvalidSignature):
        public.verify(signature, b"another message")


def test_dpop_proof_from_the_token_verifies(device_key: DeviceKeyConfig) -> None:
    signer = Pkcs11KeyStore(device_key).load_or_create()
    now = int(time.time())
    proof = make_proof(signer, method="POST", url=URL, now=now, jti="jti-0001")
    checked = verify_proof(proof, method="POST", url=URL, now=now, replay=ReplayCache())
    assert checked == thumbprint(signer.public_jwk())
    # PyJWT independently accepts the proof with the JWK from its own header.
    header = jwt.get_unverified_header(proof)
    assert header["jwk"] == signer.public_jwk()
    key = jwt.PyJWK(header["jwk"], algorithm="EdDSA")
    claims = jwt.decode(proof, key.key, algorithms=["EdDSA"])
    assert claims["htu"] == URL
    assert claims["htm"] == "POST"


def test_thumbprint_is_stable_across_module_restarts(device_key: DeviceKeyConfig) -> None:
    before = thumbprint(Pkcs11KeyStore(device_key).load_or_create().public_jwk())
    release_module(str(device_key.pkcs11_module))  # as after a reboot
    after = thumbprint(Pkcs11KeyStore(device_key).load_or_create().public_jwk())
    assert before == after
    assert len(before) == len(b64url(bytes(32)))


def test_missing_token_is_a_clear_error(device_key: DeviceKeyConfig) -> None:
    wrong = DeviceKeyConfig(
        "pkcs11", device_key.pkcs11_module, "no-such-token", device_key.pin_file
    )
    with pytest.raises(DeviceKeyError, match="no PKCS#11 token labelled 'no-such-token'"):
        Pkcs11KeyStore(wrong).load_or_create()


def test_wrong_pin_is_refused_without_showing_it(
    device_key: DeviceKeyConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GW_TEST_PIN", "not-the-pin-0000")
    wrong = DeviceKeyConfig("pkcs11", device_key.pkcs11_module, TOKEN, None, "GW_TEST_PIN")
    with pytest.raises(DeviceKeyError, match="cannot log in") as caught:
        Pkcs11KeyStore(wrong).load_or_create()
    assert "not-the-pin-0000" not in str(caught.value)


def test_config_selects_the_store(device_key: DeviceKeyConfig, tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("ca")
    path = write_config(
        tmp_path / "gateway.toml",
        gateway_id="gw-1",
        tenant="acme",
        url="wss://core.example:8444/link",
        ca_file="ca.pem",
        token="t",
        device_key=device_key,
    )
    assert path.device_key == device_key
    store = open_key_store(load_config(tmp_path / "gateway.toml").device_key, tmp_path / "k.pem")
    assert isinstance(store, Pkcs11KeyStore)
    assert isinstance(open_key_store(None, tmp_path / "k.pem"), FileKeyStore)
    assert isinstance(open_key_store(DeviceKeyConfig(), tmp_path / "k.pem"), FileKeyStore)


BASE = """
[gateway]
id = "gw-1"
tenant = "acme"
data_dir = "data"

[uplink]
url = "wss://core.example:8444/link"
token = "t"
ca_file = "ca.pem"
"""


@pytest.mark.parametrize(
    ("section", "key"),
    [
        ('backend = "tpm"', "device_key.backend"),
        ('pin = "1234"', "device_key.pin"),
        ('token_label = "x"', "device_key.token_label"),  # only for pkcs11
        ('backend = "pkcs11"\ntoken_label = "x"\npin_env = "P"', "device_key.pkcs11_module"),
        ('backend = "pkcs11"\npkcs11_module = "mod.so"\npin_env = "P"', "device_key.token_label"),
        ('backend = "pkcs11"\npkcs11_module = "mod.so"\ntoken_label = "x"', "device_key.pin_file"),
        (
            'backend = "pkcs11"\npkcs11_module = "mod.so"\ntoken_label = "x"\npin_file = "pin"',
            "device_key.pin_file",  # readable by others
        ),
    ],
)
def test_config_errors_name_the_key(tmp_path: Path, section: str, key: str) -> None:
    (tmp_path / "ca.pem").write_text("ca")
    (tmp_path / "mod.so").write_text("")
    (tmp_path / "pin").write_text("1234")
    (tmp_path / "pin").chmod(0o644)
    (tmp_path / "gateway.toml").write_text(BASE + "\n[device_key]\n" + section + "\n")
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "gateway.toml")
    assert caught.value.key == key
    assert "1234" not in str(caught.value)


def test_config_without_section_uses_the_file_store(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("ca")
    (tmp_path / "gateway.toml").write_text(BASE)
    assert load_config(tmp_path / "gateway.toml").device_key == DeviceKeyConfig()


def test_first_boot_reads_the_device_key_section_from_its_own_file(
    device_key: DeviceKeyConfig, tmp_path: Path
) -> None:
    from gateway.config import load_device_key_config
    from gateway.errors import ConfigError

    pin = "pin_file" if device_key.pin_file else "pin_env"
    pin_value = device_key.pin_file if device_key.pin_file else device_key.pin_env
    section = tmp_path / "device-key.toml"
    section.write_text(
        "[device_key]\n"
        'backend = "pkcs11"\n'
        f'pkcs11_module = "{device_key.pkcs11_module}"\n'
        f'token_label = "{device_key.token_label}"\n'
        f'{pin} = "{pin_value}"\n'
    )
    loaded = load_device_key_config(section)
    assert loaded.backend == "pkcs11"
    assert isinstance(open_key_store(loaded, tmp_path / "unused.pem"), Pkcs11KeyStore)
    (tmp_path / "empty.toml").write_text("")
    with pytest.raises(ConfigError, match="device_key"):
        load_device_key_config(tmp_path / "empty.toml")
