"""Development PKI and TLS policy, checked with real TLS handshakes over memory streams."""

from __future__ import annotations

import ssl
import warnings
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import trio
import trio.testing
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from cloud import pki
from cloud.errors import ConfigError, InvalidInput
from cloud.home import CoreHome, init_home

NOW = datetime(2030, 1, 1, tzinfo=UTC)

MemoryStream = trio.StapledStream[trio.testing.MemorySendStream, trio.testing.MemoryReceiveStream]


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> CoreHome:
    return init_home(tmp_path_factory.mktemp("pki") / "core")


@pytest.fixture(scope="module")
def other_home(tmp_path_factory: pytest.TempPathFactory) -> CoreHome:
    return init_home(tmp_path_factory.mktemp("pki-other") / "core")


# --- certificates ---------------------------------------------------------------------------


def test_ca_certificate() -> None:
    ca = pki.create_ca(now=NOW).certificate
    assert ca.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == pki.CA_NAME
    assert ca.issuer == ca.subject
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    assert ca.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign is True
    public_key = ca.public_key()
    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    assert isinstance(public_key.curve, ec.SECP256R1)
    assert ca.not_valid_after_utc - ca.not_valid_before_utc == timedelta(days=3650)
    assert ca.not_valid_before_utc <= NOW


def test_server_certificate() -> None:
    ca = pki.create_ca(now=NOW)
    server = pki.create_server_cert(ca, ("localhost", "127.0.0.1", "::1"), now=NOW).certificate
    server.verify_directly_issued_by(ca.certificate)  # raises if the signature is wrong
    san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1", "::1"]
    assert server.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    eku = server.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert server.not_valid_after_utc - server.not_valid_before_utc == timedelta(days=397)
    assert server.not_valid_before_utc <= NOW < server.not_valid_after_utc


@pytest.mark.parametrize("hosts", [(), ("",), ("bad host",)])
def test_server_certificate_rejects_bad_hosts(hosts: tuple[str, ...]) -> None:
    with pytest.raises(InvalidInput):
        pki.create_server_cert(pki.create_ca(now=NOW), hosts, now=NOW)


def test_signing_key_id_is_derived_from_the_key() -> None:
    kid, pem = pki.new_signing_key()
    other_kid, _ = pki.new_signing_key()
    assert len(kid) == 16
    assert int(kid, 16) >= 0
    assert kid != other_kid
    assert b"PRIVATE KEY" in pem


def test_private_keys_are_not_in_repr() -> None:
    pair = pki.create_ca(now=NOW)
    assert "PRIVATE" not in repr(pair)


# --- TLS handshakes -------------------------------------------------------------------------


async def _handshake(
    client_ctx: ssl.SSLContext, server_ctx: ssl.SSLContext, hostname: str = "localhost"
) -> tuple[trio.SSLStream[MemoryStream], BaseException | None, BaseException | None]:
    """Run both sides of a handshake; return the client stream and each side's error."""
    client_raw, server_raw = trio.testing.memory_stream_pair()
    client = trio.SSLStream(client_raw, client_ctx, server_hostname=hostname)
    server = trio.SSLStream(server_raw, server_ctx, server_side=True)
    errors: dict[str, BaseException | None] = {"client": None, "server": None}

    async def side(name: str, stream: trio.SSLStream[MemoryStream]) -> None:
        try:
            await stream.do_handshake()
        except trio.BrokenResourceError as exc:
            errors[name] = exc.__cause__
            # Let the peer see EOF instead of waiting forever for the next flight.
            await stream.transport_stream.aclose()

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(side, "client", client)
            nursery.start_soon(side, "server", server)
        if errors["client"] is None and errors["server"] is None:
            await client.send_all(b"ping")
            assert await server.receive_some(4) == b"ping"
    return client, errors["client"], errors["server"]


async def test_handshake_with_generated_certificates(home: CoreHome) -> None:
    client, client_err, server_err = await _handshake(
        pki.client_ssl_context(home.ca_cert), pki.server_ssl_context(home)
    )
    assert client_err is None
    assert server_err is None
    assert client.version() == "TLSv1.3"
    assert client.compression() is None


@pytest.mark.parametrize("hostname", ["127.0.0.1", "::1"])
async def test_ip_address_sans_verify(home: CoreHome, hostname: str) -> None:
    _, client_err, _ = await _handshake(
        pki.client_ssl_context(home.ca_cert), pki.server_ssl_context(home), hostname
    )
    assert client_err is None


async def test_ca_as_bytes(home: CoreHome) -> None:
    ctx = pki.client_ssl_context(home.ca_cert.read_bytes())
    _, client_err, _ = await _handshake(ctx, pki.server_ssl_context(home))
    assert client_err is None


async def test_tls12_uses_an_aead_ecdhe_suite(home: CoreHome) -> None:
    ctx = pki.client_ssl_context(home.ca_cert)
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    client, client_err, _ = await _handshake(ctx, pki.server_ssl_context(home))
    assert client_err is None
    assert client.version() == "TLSv1.2"
    cipher = client.cipher()
    assert cipher is not None
    assert cipher[0].startswith("ECDHE-")
    assert "GCM" in cipher[0] or "CHACHA20" in cipher[0]


async def test_wrong_ca_is_refused(home: CoreHome, other_home: CoreHome) -> None:
    ctx = pki.client_ssl_context(other_home.ca_cert)
    _, client_err, server_err = await _handshake(ctx, pki.server_ssl_context(home))
    assert isinstance(client_err, ssl.SSLCertVerificationError)
    assert "certificate verify failed" in str(client_err)
    assert server_err is not None


async def test_wrong_hostname_is_refused(home: CoreHome) -> None:
    ctx = pki.client_ssl_context(home.ca_cert)
    _, client_err, _ = await _handshake(ctx, pki.server_ssl_context(home), "core.example")
    assert isinstance(client_err, ssl.SSLCertVerificationError)
    assert "mismatch" in str(client_err).lower()


async def test_tls11_client_is_refused(home: CoreHome) -> None:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(home.ca_cert)
    with warnings.catch_warnings():
        # Python deprecates TLS 1.0/1.1 settings; this test plays an outdated client.
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.minimum_version = ssl.TLSVersion.TLSv1
        ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")  # let OpenSSL 3 offer TLS 1.1 at all
    _, client_err, server_err = await _handshake(ctx, pki.server_ssl_context(home))
    assert client_err is not None
    assert isinstance(server_err, ssl.SSLError)
    assert server_err.reason == "UNSUPPORTED_PROTOCOL"


async def test_cbc_only_tls12_client_is_refused(home: CoreHome) -> None:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(home.ca_cert)
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers("ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA384")
    _, client_err, server_err = await _handshake(ctx, pki.server_ssl_context(home))
    assert client_err is not None
    assert isinstance(server_err, ssl.SSLError)
    assert server_err.reason == "NO_SHARED_CIPHER"


def test_contexts_disable_compression_and_renegotiation(home: CoreHome) -> None:
    for ctx in (pki.server_ssl_context(home), pki.client_ssl_context(home.ca_cert)):
        assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2
        assert ctx.options & ssl.OP_NO_COMPRESSION
        assert ctx.options & ssl.OP_NO_RENEGOTIATION
        tls12 = [c["name"] for c in ctx.get_ciphers() if c["protocol"] == "TLSv1.2"]
        assert tls12
        assert all("CBC" not in n and ("GCM" in n or "CHACHA20" in n) for n in tls12)


def test_client_context_verifies(home: CoreHome) -> None:
    ctx = pki.client_ssl_context(home.ca_cert)
    assert ctx.check_hostname is True
    assert ctx.verify_mode == ssl.CERT_REQUIRED
    # Only our CA is trusted, not the system store.
    assert len(ctx.get_ca_certs()) == 1


def test_bad_ca_input(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        pki.client_ssl_context(b"not a certificate")
    with pytest.raises(ConfigError):
        pki.client_ssl_context(tmp_path / "missing.pem")


def test_server_context_without_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        pki.server_ssl_context(CoreHome(tmp_path))
