"""Key material and TLS policy for the core: development CA, server certificate, JWT keys.

Contract:

* :func:`create_ca` makes a self-signed EC P-256 CA named "AssetBook development CA", valid
  10 years. :func:`create_server_cert` makes a P-256 server certificate for the configured host
  names and IP addresses (as DNS / IP subjectAltNames), valid 397 days, signed by that CA.
* :func:`new_signing_key` makes an Ed25519 JWT signing key and its ``kid`` (see :func:`key_id`).
* :func:`server_ssl_context` / :func:`client_ssl_context` build the only TLS configurations the
  core uses: TLS 1.2 minimum, forward-secret AEAD suites only for TLS 1.2, no compression, no
  renegotiation; the client verifies the chain against the core's CA *only* and the host name.

Everything here returns PEM bytes or ``ssl.SSLContext`` objects; writing files (with the right
permissions) is :mod:`cloud.home`'s job. This is a development PKI: there is no revocation (CRL,
OCSP), no intermediate CA and no ACME; operators with a real PKI replace the files in ``tls/``.
"""

from __future__ import annotations

import hashlib
import ipaddress
import ssl
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from cloud.errors import ConfigError, InvalidInput

if TYPE_CHECKING:
    from pathlib import Path

    from cloud.home import CoreHome

CA_NAME = "AssetBook development CA"
CA_LIFETIME = timedelta(days=3650)
# CA/Browser Forum Baseline Requirements §6.3.2 cap at 398 days; 397 leaves a day of margin
# and is what clients such as Safari enforce for publicly trusted certificates.
SERVER_LIFETIME = timedelta(days=397)
# Backdate notBefore so a peer whose clock is a little behind still accepts a fresh cert.
CLOCK_SKEW_ALLOWANCE = timedelta(minutes=5)

# OpenSSL cipher string for TLS 1.2 (TLS 1.3 suites are all AEAD and configured separately by
# OpenSSL): ECDHE for forward secrecy, AES-GCM or ChaCha20-Poly1305 for AEAD; no CBC, no RSA key
# exchange, no SHA-1 MACs (RFC 9325 §4.2, OWASP TLS cheat sheet).
TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"


@dataclass(frozen=True, slots=True)
class CertKeyPair:
    """A PEM certificate and its PEM (PKCS#8, unencrypted) private key."""

    cert_pem: bytes
    key_pem: bytes = field(repr=False)

    @property
    def certificate(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.cert_pem)


def create_ca(*, now: datetime) -> CertKeyPair:
    """Create the self-signed development CA.

    Args:
        now: an aware datetime; the validity period starts shortly before it.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "AssetBook"),
            x509.NameAttribute(NameOID.COMMON_NAME, CA_NAME),
        ]
    )
    builder = (
        _base_builder(name, name, key.public_key(), now, CA_LIFETIME)
        # path_length=0: this CA signs leaf certificates only (RFC 5280 §4.2.1.9).
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
    )
    cert = builder.sign(key, hashes.SHA256())
    return CertKeyPair(cert.public_bytes(serialization.Encoding.PEM), _private_pem(key))


def create_server_cert(ca: CertKeyPair, hosts: tuple[str, ...], *, now: datetime) -> CertKeyPair:
    """Create a server certificate for ``hosts``, signed by ``ca``.

    Args:
        ca: the CA from :func:`create_ca` (or one loaded from ``tls/``).
        hosts: DNS names and/or IP addresses; the first is also the subject CN.
        now: an aware datetime.

    Raises:
        InvalidInput: ``hosts`` is empty or holds an empty or non-ASCII name.
    """
    sans = _subject_alt_names(hosts)
    ca_cert = ca.certificate
    ca_key = serialization.load_pem_private_key(ca.key_pem, password=None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise ConfigError("the CA key is not an EC key", key="tls/ca.key")
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])])
    builder = (
        _base_builder(subject, ca_cert.subject, key.public_key(), now, SERVER_LIFETIME)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        # Host names belong in subjectAltName; clients ignore the CN (RFC 6125 §6.4.4).
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
    )
    cert = builder.sign(ca_key, hashes.SHA256())
    return CertKeyPair(cert.public_bytes(serialization.Encoding.PEM), _private_pem(key))


def new_signing_key() -> tuple[str, bytes]:
    """Create an Ed25519 JWT signing key.

    Returns:
        ``(kid, pem)``: the key id (see :func:`key_id`) and the PKCS#8 PEM private key.
    """
    key = ed25519.Ed25519PrivateKey.generate()
    return key_id(key.public_key()), _private_pem(key)


def key_id(public_key: ed25519.Ed25519PublicKey) -> str:
    """The ``kid`` of a signing key: first 16 hex digits of SHA-256 over the raw public key.

    Deriving it from the key (rather than numbering keys) means a ``kid`` can never be
    reused for different key material (RFC 7515 §4.1.4 leaves the format to us).
    """
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def server_ssl_context(home: CoreHome) -> ssl.SSLContext:
    """TLS server context for every listener of the core, using ``tls/server.{pem,key}``.

    Raises:
        ConfigError: the certificate or key is missing or unreadable.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    _harden(ctx)
    # Pick the server's preferred (strongest) suite rather than the client's first choice.
    ctx.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    try:
        ctx.load_cert_chain(home.server_cert, home.server_key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot load server certificate: {exc}", key="tls/server.pem") from exc
    return ctx


def client_ssl_context(ca: Path | bytes) -> ssl.SSLContext:
    """TLS client context that trusts only the core's CA and checks the host name.

    Args:
        ca: path to ``ca.pem`` or its PEM bytes (as handed to a gateway at provisioning).

    Raises:
        ConfigError: the CA certificate cannot be loaded.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # check_hostname + CERT_REQUIRED by default
    _harden(ctx)
    try:
        if isinstance(ca, bytes):
            ctx.load_verify_locations(cadata=ca.decode("ascii"))
        else:
            ctx.load_verify_locations(cafile=ca)
    except (OSError, ssl.SSLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot load CA certificate: {exc}", key="tls/ca.pem") from exc
    return ctx


def _harden(ctx: ssl.SSLContext) -> None:
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(TLS12_CIPHERS)
    # CRIME (CVE-2012-4929) for compression; renegotiation is a DoS lever and never needed
    # by our clients (RFC 9325 §3.5 recommends against it for TLS 1.2).
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION


def _base_builder(
    subject: x509.Name,
    issuer: x509.Name,
    public_key: ec.EllipticCurvePublicKey,
    now: datetime,
    lifetime: timedelta,
) -> x509.CertificateBuilder:
    start = now - CLOCK_SKEW_ALLOWANCE
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + lifetime)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )


def _key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    # ECDSA leaf keys sign the handshake (digitalSignature); the CA key signs certs and CRLs.
    return x509.KeyUsage(
        digital_signature=not cert_sign,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _subject_alt_names(hosts: tuple[str, ...]) -> list[x509.GeneralName]:
    if not hosts:
        raise InvalidInput("at least one host name or address is required")
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
            continue
        except ValueError:
            pass
        if not host or not host.isascii() or any(c.isspace() for c in host):
            raise InvalidInput(f"not a usable host name: {host!r}")
        names.append(x509.DNSName(host))
    return names


def _private_pem(key: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey) -> bytes:
    # Unencrypted PKCS#8: the file mode (0600, in a 0700 directory) protects it at rest; a
    # passphrase would have to live next to it for the service to start unattended.
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
