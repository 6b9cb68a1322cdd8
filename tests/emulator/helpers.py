"""Helpers for the emulator tests: token requests, certificates, proofs of possession."""

from __future__ import annotations

import base64
import hashlib
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from rotator.adapters import sdk_clients
from rotator.emulator.runner import RunningEmulator


def token_for(
    http: httpx.Client, emu: RunningEmulator, client_id: str, secret: str, scope: str
) -> httpx.Response:
    return http.post(
        f"/{emu.tenant.tenant_id}/oauth2/v2.0/token",
        data={
            "grant_type": "client_credentials",
            "client_id": client_id,
            "client_secret": secret,
            "scope": scope,
        },
    )


def claims_of(token: str) -> dict[str, object]:
    decoded: dict[str, object] = jwt.decode(token, options={"verify_signature": False})
    return decoded


def rotator_credential(emu: RunningEmulator) -> Any:
    env = emu.env
    return sdk_clients.async_secret_credential(
        env["AZURE_TENANT_ID"],
        env["AZURE_CLIENT_ID"],
        env["AZURE_CLIENT_SECRET"],
        authority_host=env["ROTATOR_AUTHORITY_HOST"],
        ca_bundle=env["ROTATOR_CA_BUNDLE"],
    )


def admin_credential(emu: RunningEmulator) -> Any:
    """The seeded tenant administrator (Application.ReadWrite.All, Policy.ReadWrite...)."""
    env = emu.env
    return sdk_clients.async_secret_credential(
        env["AZURE_TENANT_ID"],
        env["EMULATOR_ADMIN_CLIENT_ID"],
        env["EMULATOR_ADMIN_CLIENT_SECRET"],
        authority_host=env["ROTATOR_AUTHORITY_HOST"],
        ca_bundle=env["ROTATOR_CA_BUNDLE"],
    )


@dataclass
class Cert:
    key: rsa.RSAPrivateKey
    der: bytes
    pem: bytes  # certificate + private key, as CertificateCredential wants it

    @property
    def x5t(self) -> str:
        return base64.urlsafe_b64encode(hashlib.sha1(self.der).digest()).decode().rstrip("=")

    @property
    def b64(self) -> str:
        return base64.b64encode(self.der).decode()


def make_cert(name: str = "test", days: int = 30, *, start_offset_days: int = 0) -> Cert:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    start = datetime.now(UTC) - timedelta(hours=1) + timedelta(days=start_offset_days)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + timedelta(days=days))
        .sign(key, hashes.SHA256())
    )
    pem = cert.public_bytes(serialization.Encoding.PEM) + key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return Cert(key, cert.public_bytes(serialization.Encoding.DER), pem)


def make_proof(
    cert: Cert,
    object_id: str,
    *,
    lifetime: int = 600,
    aud: str = "00000002-0000-0000-c000-000000000000",
) -> str:
    now = int(time.time())
    return jwt.encode(
        {"aud": aud, "iss": object_id, "nbf": now, "exp": now + lifetime},
        cert.key,
        algorithm="RS256",
        headers={"x5t": cert.x5t},
    )


def padded(token: str) -> str:
    """The same JWS with ``=`` padding put back on each base64url segment."""
    return ".".join(part + "=" * (-len(part) % 4) for part in token.split("."))
