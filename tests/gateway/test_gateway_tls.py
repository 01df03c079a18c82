"""gateway.tls builds the same client policy as cloud.pki, and it verifies a real handshake."""

from __future__ import annotations

import ssl
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pytest
import trio
import trio.testing

from cloud import pki
from gateway import tls
from gateway.errors import ConfigError

if TYPE_CHECKING:
    from pathlib import Path


@pytest.fixture(scope="module")
def ca() -> pki.CertKeyPair:
    return pki.create_ca(now=datetime.now(UTC))


def _policy(ctx: ssl.SSLContext) -> tuple[object, ...]:
    ciphers = sorted(c["name"] for c in ctx.get_ciphers())
    return (ctx.minimum_version, ctx.options, ctx.verify_mode, ctx.check_hostname, ciphers)


def test_same_policy_as_cloud_pki(ca: pki.CertKeyPair, tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_bytes(ca.cert_pem)
    ours = tls.client_ssl_context(tmp_path / "ca.pem")
    assert _policy(ours) == _policy(pki.client_ssl_context(tmp_path / "ca.pem"))
    assert ours.cert_store_stats()["x509_ca"] == 1
    assert tls.TLS12_CIPHERS == pki.TLS12_CIPHERS


@pytest.mark.parametrize("bad", [b"not a certificate", "missing.pem"])
def test_unloadable_ca_is_a_config_error(tmp_path: Path, bad: bytes | str) -> None:
    ca = bad if isinstance(bad, bytes) else tmp_path / bad
    with pytest.raises(ConfigError, match="cannot load CA certificate"):
        tls.client_ssl_context(ca)


async def _handshake(
    ca: pki.CertKeyPair, signer: pki.CertKeyPair, tmp_path: Path
) -> tuple[str | None, BaseException | None]:
    """The client's TLS version, or the reason its handshake failed."""
    server_pair = pki.create_server_cert(signer, ("core.example",), now=datetime.now(UTC))
    (tmp_path / "cert.pem").write_bytes(server_pair.cert_pem)
    (tmp_path / "key.pem").write_bytes(server_pair.key_pem)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    client_raw, server_raw = trio.testing.memory_stream_pair()
    client = trio.SSLStream(
        client_raw, tls.client_ssl_context(ca.cert_pem), server_hostname="core.example"
    )
    server = trio.SSLStream(server_raw, server_ctx, server_side=True)
    refused: BaseException | None = None

    async def side(stream: trio.SSLStream[trio.StapledStream[Any, Any]], me: str) -> None:
        nonlocal refused
        try:
            await stream.do_handshake()
        except trio.BrokenResourceError as exc:
            if me == "client":
                refused = exc.__cause__
            # Let the peer see EOF instead of waiting for the next flight.
            await stream.transport_stream.aclose()

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(side, client, "client")
            nursery.start_soon(side, server, "server")
    return (None if refused else client.version()), refused


async def test_handshake_with_the_trusted_ca(ca: pki.CertKeyPair, tmp_path: Path) -> None:
    assert await _handshake(ca, ca, tmp_path) == ("TLSv1.3", None)


async def test_handshake_with_another_ca_is_refused(ca: pki.CertKeyPair, tmp_path: Path) -> None:
    other = pki.create_ca(now=datetime.now(UTC))
    version, refused = await _handshake(ca, other, tmp_path)
    assert version is None
    assert isinstance(refused, ssl.SSLCertVerificationError)
