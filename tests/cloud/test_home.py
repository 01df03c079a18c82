"""The core home: layout, permissions, refusal to clobber, config validation."""

from __future__ import annotations

import os
import stat
import tomllib
from pathlib import Path

import pytest
import tomli_w
from cryptography import x509

from cloud.errors import ConfigError, Conflict
from cloud.home import CoreHome, init_home, load_config, read_active_kid


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def home(tmp_path: Path) -> CoreHome:
    return init_home(tmp_path / "core")


def test_init_creates_every_file(home: CoreHome) -> None:
    kid = read_active_kid(home)
    for path in (
        home.config_path,
        home.ca_cert,
        home.ca_key,
        home.server_cert,
        home.server_key,
        home.signing_key(kid),
        home.db_path,
        home.access_log,
    ):
        assert path.is_file(), path
    assert list(home.signing_keys()) == [kid]


def test_permissions(home: CoreHome) -> None:
    for directory in (home.root, home.tls_dir, home.keys_dir, home.db_dir, home.logs_dir):
        assert _mode(directory) == 0o700, directory
    secret_files = [home.ca_key, home.server_key, home.db_path, home.access_log]
    secret_files += list(home.signing_keys().values())
    for path in secret_files:
        assert _mode(path) == 0o600, path


def test_permissions_ignore_a_permissive_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        created = init_home(tmp_path / "core")
    finally:
        os.umask(old)
    assert _mode(created.root) == 0o700
    assert _mode(created.ca_key) == 0o600


def test_default_config(home: CoreHome) -> None:
    config = load_config(home)
    assert config.link_port == 8444
    assert config.rest_port == 8443
    assert config.listen_host == "127.0.0.1"
    assert config.tls_hosts == ("localhost", "127.0.0.1", "::1")
    assert config.link_url == "wss://localhost:8444/link"
    assert config.rest_url == "https://localhost:8443"
    assert config.issuer == config.rest_url


def test_custom_hosts_and_ports(tmp_path: Path) -> None:
    created = init_home(
        tmp_path / "c", hosts=("::1", "core.example"), link_port=9000, rest_port=9001
    )
    config = load_config(created)
    assert config.link_url == "wss://[::1]:9000/link"
    assert config.rest_url == "https://[::1]:9001"
    assert config.tls_hosts == ("::1", "core.example")
    cert = x509.load_pem_x509_certificate(created.server_cert.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["core.example"]


def test_refuses_existing_home(home: CoreHome) -> None:
    before = home.ca_cert.read_bytes()
    with pytest.raises(Conflict):
        init_home(home.root)
    assert home.ca_cert.read_bytes() == before


def test_force_replaces_key_material_but_keeps_the_database(home: CoreHome) -> None:
    old_ca = home.ca_cert.read_bytes()
    old_kid = read_active_kid(home)
    home.db_path.write_bytes(b"precious")
    init_home(home.root, force=True)
    assert home.ca_cert.read_bytes() != old_ca
    new_kid = read_active_kid(home)
    assert new_kid != old_kid
    assert list(home.signing_keys()) == [new_kid]
    assert home.db_path.read_bytes() == b"precious"


def test_refuses_unrelated_directory(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(Conflict):
        init_home(tmp_path)
    assert not (tmp_path / "tls").exists()


def test_interrupted_init_can_be_rerun(tmp_path: Path) -> None:
    root = tmp_path / "core"
    init_home(root)
    (root / "config.toml").unlink()  # as if the process died before the last step
    created = init_home(root)
    assert load_config(created).link_port == 8444


def _rewrite(home: CoreHome, section: str, key: str, value: object) -> None:
    data = tomllib.loads(home.config_path.read_text())
    data[section][key] = value
    home.config_path.write_text(tomli_w.dumps(data))


@pytest.mark.parametrize(
    ("section", "key", "value"),
    [
        ("listen", "link_port", 0),
        ("listen", "link_port", 70000),
        ("listen", "rest_port", "8443"),
        ("listen", "rest_port", True),
        ("public", "link_url", "ws://localhost:8444/link"),
        ("public", "rest_url", "http://localhost:8443"),
        ("core", "issuer", ""),
        ("tls", "hosts", []),
        ("tokens", "gateway_lifetime_s", 5),
    ],
)
def test_invalid_values_name_the_key(home: CoreHome, section: str, key: str, value: object) -> None:
    _rewrite(home, section, key, value)
    with pytest.raises(ConfigError) as info:
        load_config(home)
    assert info.value.key == f"{section}.{key}"


def test_unknown_key_is_refused(home: CoreHome) -> None:
    _rewrite(home, "listen", "link_prot", 1)
    with pytest.raises(ConfigError) as info:
        load_config(home)
    assert info.value.key == "listen.link_prot"


def test_missing_key_is_named(home: CoreHome) -> None:
    data = tomllib.loads(home.config_path.read_text())
    del data["listen"]["rest_port"]
    home.config_path.write_text(tomli_w.dumps(data))
    with pytest.raises(ConfigError, match=r"listen\.rest_port: missing"):
        load_config(home)


def test_not_toml(home: CoreHome) -> None:
    home.config_path.write_text("listen = [")
    with pytest.raises(ConfigError) as info:
        load_config(home)
    assert info.value.key == "config.toml"


def test_not_a_home(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not an initialised home"):
        load_config(CoreHome(tmp_path))


@pytest.mark.parametrize("kid", ["../../etc/passwd", "ABCDEF0123456789", "abc"])
def test_malformed_kid_is_not_a_path(home: CoreHome, kid: str) -> None:
    with pytest.raises(ConfigError):
        home.signing_key(kid)


def test_active_kid_must_have_a_key_file(home: CoreHome) -> None:
    home.active_key_file.write_text("0123456789abcdef\n")
    with pytest.raises(ConfigError, match="no key file"):
        read_active_kid(home)
