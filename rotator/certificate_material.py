"""Key pairs, self-signed certificates, the bundles consumers read, proof-of-possession JWTs.

Pure computation over ``cryptography`` and PyJWT, no I/O: the engine uses it directly.

Private keys exist as ``cryptography`` objects in memory and leave this module only
wrapped in ``SecretValue`` (PEM, or base64 PKCS#12), which the engine writes to Key
Vault and nowhere else. Errors raised here never quote key material.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import datetime, timedelta

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from rotator.domain.certificates import (
    CERT_BACKDATE,
    PEM_CONTENT_TYPE,
    PKCS12_CONTENT_TYPE,
    proof_claims,
    thumbprint_of,
    x5t_of,
)
from rotator.domain.secret_value import SecretValue

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey

_RSA_BITS = {"RSA2048": 2048, "RSA3072": 3072, "RSA4096": 4096}


class CertificateError(ValueError):
    """Material that cannot be used; the message never contains the material."""


@dataclass(frozen=True, slots=True)
class PublicCertificate:
    """A certificate without its key: what Key Vault hands out of a certificate it made."""

    certificate: x509.Certificate

    @property
    def der(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.DER)

    @property
    def der_b64(self) -> str:
        return base64.b64encode(self.der).decode()

    @property
    def thumbprint(self) -> str:
        return thumbprint_of(self.der)

    @property
    def not_before(self) -> datetime:
        return self.certificate.not_valid_before_utc

    @property
    def not_after(self) -> datetime:
        return self.certificate.not_valid_after_utc


@dataclass(frozen=True, slots=True)
class CertificateMaterial(PublicCertificate):
    """A certificate with its private key, in memory only."""

    private_key: PrivateKey

    def __repr__(self) -> str:
        return f"CertificateMaterial(thumbprint={self.thumbprint})"


# What registering a certificate in Entra needs: its public side only.
AnyCertificate = CertificateMaterial | PublicCertificate


def public_certificate(der: bytes) -> PublicCertificate:
    try:
        return PublicCertificate(x509.load_der_x509_certificate(der))
    except ValueError:
        raise CertificateError("Key Vault returned a certificate that is not DER X.509"
                               ) from None


def _new_key(key_type: str) -> PrivateKey:
    name = str(key_type).upper()
    if name in _RSA_BITS:
        return rsa.generate_private_key(public_exponent=65537, key_size=_RSA_BITS[name])
    if name == "EC_P256":
        return ec.generate_private_key(ec.SECP256R1())
    raise CertificateError(f"unsupported key type {key_type!r}")


def _subject(text: str) -> x509.Name:
    try:
        return x509.Name.from_rfc4514_string(text)
    except ValueError:
        # A bare name ("orders") becomes a common name rather than an error.
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, text)])


def generate(key_type: str, subject: str, now: datetime, not_after: datetime
             ) -> CertificateMaterial:
    """A new key pair and a self-signed certificate valid from shortly before ``now``."""
    key = _new_key(key_type)
    name = _subject(subject)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CERT_BACKDATE)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(digital_signature=True, content_commitment=False,
                          key_encipherment=False, data_encipherment=False, key_agreement=False,
                          key_cert_sign=False, crl_sign=False, encipher_only=False,
                          decipher_only=False),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return CertificateMaterial(cert, key)


def to_pem(material: CertificateMaterial) -> SecretValue:
    """Private key then certificate, as Key Vault's own PEM certificates are laid out."""
    key = material.private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    cert = material.certificate.public_bytes(serialization.Encoding.PEM)
    return SecretValue((key + cert).decode("ascii"))


def to_pkcs12(material: CertificateMaterial) -> SecretValue:
    """Base64 of an unprotected PFX, as Key Vault stores certificate-backed secrets."""
    blob = pkcs12.serialize_key_and_certificates(
        None, material.private_key, material.certificate, None, serialization.NoEncryption()
    )
    return SecretValue(base64.b64encode(blob).decode("ascii"))


def bundle(material: CertificateMaterial, fmt: str) -> tuple[SecretValue, str]:
    """(value, content type) in the policy's ``key_vault_format``."""
    if str(fmt).lower() == "pkcs12":
        return to_pkcs12(material), PKCS12_CONTENT_TYPE
    return to_pem(material), PEM_CONTENT_TYPE


def load(value: SecretValue, content_type: str | None) -> CertificateMaterial:
    """Read a bundle this module wrote (PEM or base64 PKCS#12) back into memory."""
    text = value.reveal()
    try:
        if content_type == PKCS12_CONTENT_TYPE or "-----BEGIN" not in text:
            key, cert, _ = pkcs12.load_key_and_certificates(base64.b64decode(text), None)
        else:
            data = text.encode("ascii")
            key = serialization.load_pem_private_key(data, password=None)
            cert = x509.load_pem_x509_certificate(data)
    except (ValueError, TypeError, UnicodeEncodeError):
        raise CertificateError(
            f"the secret ({content_type or 'no content type'}) is not a certificate bundle "
            "with its private key"
        ) from None
    if cert is None or not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise CertificateError("the secret does not hold a certificate with an RSA or EC key")
    return CertificateMaterial(cert, key)


def pem_for_probe(value: SecretValue, content_type: str | None) -> SecretValue:
    """The PEM form of a stored bundle (what the token probe hands to azure-identity)."""
    if content_type == PEM_CONTENT_TYPE:
        return value
    return to_pem(load(value, content_type))


def proof_jwt(material: CertificateMaterial, object_id: str, now: datetime) -> str:
    """Graph's proof of possession: signed by ``material``'s key, x5t names its certificate.

    The JWT holds no secret (only claims and a signature), so it may be passed around,
    though it is short-lived and never logged.
    """
    key = material.private_key
    alg = "RS256" if isinstance(key, rsa.RSAPrivateKey) else "ES256"
    return jwt.encode(
        proof_claims(object_id, now), key, algorithm=alg,
        headers={"x5t": x5t_of(material.der), "typ": "JWT"},
    )


def valid_for(material: CertificateMaterial, now: datetime,
              margin: timedelta = timedelta(0)) -> bool:
    return material.not_before <= now and now + margin < material.not_after
