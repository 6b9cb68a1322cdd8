"""Certificates for tests: a self-signed certificate with its key (``make_cert``), and an
emulated app holding certificates rotator has never seen, with its policy file."""

from __future__ import annotations

import base64
import hashlib
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from rotator import certificate_material as certs
from rotator.domain.credentials import CredentialKind
from rotator.emulator.invariants import Managed
from rotator.emulator.runner import RunningEmulator


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


@dataclass
class CertApp:
    app_id: str
    object_id: str
    secret_name: str
    old_key_ids: list[str]

    @property
    def managed(self) -> Managed:
        return Managed(self.app_id, self.secret_name, CredentialKind.CERTIFICATE)


def make_cert_app(emu: RunningEmulator, *, expired: int = 0, unknown: int = 0) -> CertApp:
    """An app with certificates whose keys rotator has never seen (some already expired)."""
    now = datetime.now(UTC)
    ders = [certs.generate("RSA2048", "CN=expired", now - timedelta(days=400),
                           now - timedelta(days=1)).der for _ in range(expired)]
    ders += [certs.generate("RSA2048", "CN=unknown", now - timedelta(days=100),
                            now + timedelta(days=5)).der for _ in range(unknown)]
    name = f"itc-{uuid.uuid4().hex[:8]}"
    app = emu.tenant.create_app(name, certificates=ders)
    return CertApp(app.app_id, app.id, f"{name}-cert",
                   [k.key_id for k in emu.tenant.keys(app.app_id)])


def policy_file(path: Path, app: CertApp, fmt: str = "pem") -> Path:
    path.write_text("\n".join([
        "[defaults]", "verify_successes = 2", "verify_timeout_seconds = 60", "grace_hours = 24",
        "lifetime_days = 90", "[[app]]", f'app_id = "{app.app_id}"',
        f'secret_name = "{app.secret_name}"', 'credential = "certificate"',
        f'key_vault_format = "{fmt}"', 'certificate_subject = "CN=rotator-it"',
    ]) + "\n")
    return path
