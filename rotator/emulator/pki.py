"""Key material the emulator makes at start: a private CA, a TLS server certificate, a token key.

Everything lives in memory; the runner writes PEM files only into directories it owns
(a private temp dir for the server key, the caller's workdir for the CA certificate).
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    # Clients disagree about padding (async azure-identity keeps it), so accept both.
    text = text.rstrip("=")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True, slots=True)
class TlsMaterial:
    ca_cert_pem: bytes
    server_cert_pem: bytes
    server_key_pem: bytes


def make_tls_material(hosts: tuple[str, ...] = ("127.0.0.1", "localhost")) -> TlsMaterial:
    """A CA plus a server certificate it signs; EC keys because they are quick to make."""
    now = datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "rotator emulator CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    server_key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = []
    for host in hosts:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            sans.append(x509.DNSName(host))
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
        .issuer_name(ca_name)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=29))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return TlsMaterial(
        ca_cert_pem=ca_cert.public_bytes(serialization.Encoding.PEM),
        server_cert_pem=server_cert.public_bytes(serialization.Encoding.PEM),
        server_key_pem=server_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )


class SigningKey:
    """The tenant's token-signing key, published in the JWKS like Entra's."""

    def __init__(self) -> None:
        self.private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        der = self.private_key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        # Entra's kid equals the x5t of its signing certificate; a key hash serves the same role.
        self.kid = b64url(hashlib.sha1(der, usedforsecurity=False).digest())

    def jwk(self) -> dict[str, object]:
        numbers = self.private_key.public_key().public_numbers()
        n = numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big")
        e = numbers.e.to_bytes((numbers.e.bit_length() + 7) // 8, "big")
        return {"kty": "RSA", "use": "sig", "kid": self.kid, "x5t": self.kid,
                "n": b64url(n), "e": b64url(e)}

    def jwks(self) -> dict[str, object]:
        return {"keys": [self.jwk()]}


def cert_thumbprints(der: bytes) -> tuple[bytes, bytes]:
    """(SHA-1, SHA-256) of a DER certificate: what ``x5t`` and ``x5t#S256`` carry."""
    return (
        hashlib.sha1(der, usedforsecurity=False).digest(),
        hashlib.sha256(der).digest(),
    )


_PLACEHOLDER_KEY: ec.EllipticCurvePrivateKey | None = None


def placeholder_cert_der(subject: str, start: datetime, end: datetime) -> bytes:
    """A certificate for seeded credentials whose private key nobody holds.

    Made only when a client asks for the raw key; one shared key keeps it cheap.
    """
    global _PLACEHOLDER_KEY
    if _PLACEHOLDER_KEY is None:
        _PLACEHOLDER_KEY = ec.generate_private_key(ec.SECP256R1())
    key = _PLACEHOLDER_KEY
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    if end <= start:
        end = start + timedelta(days=1)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.DER)
