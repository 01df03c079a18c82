"""The gateway's TLS client context, built with the standard library's ssl module alone.

Contract: :func:`client_ssl_context` returns a context that trusts only the given CA, checks
the host name, requires TLS 1.2 or later with the ECDHE AEAD cipher suites, and refuses
compression and renegotiation: the same client policy as ``cloud.pki.client_ssl_context``
(a test compares the two). It exists so that the gateway process does not import
``cryptography`` (about 9 MiB resident with x509) just to connect its uplink; cloud.pki needs
it to make certificates, the gateway only trusts one.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Final

from gateway.errors import ConfigError

#: TLS 1.2 suites allowed (TLS 1.3's are all AEAD and need no list); as cloud.pki.TLS12_CIPHERS.
TLS12_CIPHERS: Final = "ECDHE+AESGCM:ECDHE+CHACHA20"


def client_ssl_context(ca: Path | bytes) -> ssl.SSLContext:
    """TLS client context that trusts only the core's CA and checks the host name.

    Args:
        ca: path to ``ca.pem`` or its PEM bytes (as handed to a gateway at provisioning).

    Raises:
        ConfigError: the CA certificate cannot be loaded.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # check_hostname + CERT_REQUIRED by default
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(TLS12_CIPHERS)
    # CRIME (CVE-2012-4929) for compression; renegotiation is a DoS lever and never needed
    # by the gateway (RFC 9325 §3.5 recommends against it for TLS 1.2).
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
    try:
        if isinstance(ca, bytes):
            ctx.load_verify_locations(cadata=ca.decode("ascii"))
        else:
            ctx.load_verify_locations(cafile=ca)
    except (OSError, ssl.SSLError, UnicodeDecodeError) as exc:
        where = Path("<CA bytes>") if isinstance(ca, bytes) else ca
        raise ConfigError(
            where, "", f"cannot load CA certificate: {exc}", "give the core's tls/ca.pem"
        ) from exc
    return ctx
