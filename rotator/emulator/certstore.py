"""One Key Vault's certificates: versions, policies, create operations, backing key and secret.

As in Key Vault, a certificate version, its key version and its backing secret version
share one version id; the backing secret is written into the vault's secret store (so
``GET /secrets/{name}/{version}`` serves it, in PKCS#12 or PEM as the policy's content
type says) and a version disabled here is disabled there too. The backing secret carries
the certificate's tags. A create (``POST
/certificates/{name}/create``) answers with a pending operation; the key pair and the
self-signed certificate are made the next time anything reads the certificate, which the
SDK's poller does at once.
"""

from __future__ import annotations

import base64
import binascii
import copy
import secrets
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from rotator.emulator.model import utcnow
from rotator.emulator.vaultstore import VaultError, VaultStore, check_name

PKCS12 = "application/x-pkcs12"
PEM = "application/x-pem-file"
RSA_SIZES = (2048, 3072, 4096)
# Self-signed certificates Key Vault makes are valid from a little before they are made.
BACKDATE = timedelta(minutes=5)

Key = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


@dataclass(eq=False)
class CertVersion:
    name: str
    version: str
    certificate: x509.Certificate
    key: Key | None
    tags: dict[str, str]
    enabled: bool
    created: datetime
    updated: datetime

    @property
    def der(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.DER)

    def __repr__(self) -> str:
        return f"CertVersion(name={self.name!r}, version={self.version!r})"


@dataclass(eq=False)
class Operation:
    """A create request; ``status`` is ``inProgress`` until the certificate exists."""

    name: str
    request_id: str
    policy: dict[str, Any]
    tags: dict[str, str]
    enabled: bool
    status: str = "inProgress"
    version: str | None = None
    csr: bytes = b""


@dataclass(eq=False)
class _Cert:
    name: str
    policy: dict[str, Any]
    versions: list[CertVersion] = field(default_factory=list)
    operation: Operation | None = None


def _not_found(name: str, version: str | None = None) -> VaultError:
    what = f"{name}/{version}" if version else name
    return VaultError(
        404, "CertificateNotFound",
        f"A certificate with (name/id) {what} was not found in this key vault. If you "
        "recently deleted this certificate you may be able to recover it using the correct "
        "recovery command. For help resolving this issue, please see "
        "https://go.microsoft.com/fwlink/?linkid=2125182",
    )


def _bad(message: str) -> VaultError:
    return VaultError(400, "BadParameter", message)


def content_type_of(policy: dict[str, Any]) -> str:
    props = policy.get("secret_props") or {}
    return str(props.get("contentType") or PKCS12)


def _exportable(policy: dict[str, Any]) -> bool:
    return bool((policy.get("key_props") or {}).get("exportable", True))


def _key_props(key: Key) -> dict[str, Any]:
    if isinstance(key, rsa.RSAPrivateKey):
        return {"kty": "RSA", "key_size": key.key_size}
    return {"kty": "EC", "crv": "P-256"}


def _subject_text(cert: x509.Certificate) -> str:
    return cert.subject.rfc4514_string()


def _parse_import(value: str, password: str | None) -> tuple[x509.Certificate, Key]:
    """The certificate and private key of an import body: base64 of a PFX or of PEM text
    (the SDK base64-encodes whatever bytes it is given), or PEM text itself."""
    secret = password.encode() if password else None
    try:
        raw = value.encode("ascii") if value.lstrip().startswith("-----BEGIN") else (
            base64.b64decode(value, validate=True))
        if raw.lstrip().startswith(b"-----BEGIN"):
            key: Any = serialization.load_pem_private_key(raw, secret)
            cert: Any = x509.load_pem_x509_certificate(raw)
        else:
            key, cert, _ = pkcs12.load_key_and_certificates(raw, secret)
    except (ValueError, TypeError, UnicodeEncodeError, binascii.Error):
        raise _bad("The specified certificate content could not be read: it must be a "
                   "base64 PFX, or PEM with the private key, and the password (if any) "
                   "must match.") from None
    if cert is None:
        raise _bad("The specified certificate content does not contain a certificate.")
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise _bad("Private key is not specified in the specified X.509 PEM certificate "
                   "content. Please specify the private key in the PEM content.")
    return cert, key


def _check_policy(policy: dict[str, Any], *, creating: bool) -> None:
    content_type = content_type_of(policy)
    if content_type not in (PKCS12, PEM):
        raise _bad(f"Property secret_props.contentType has an invalid value {content_type!r}; "
                   f"expected {PKCS12} or {PEM}.")
    if not creating:
        return
    issuer = str((policy.get("issuer") or {}).get("name") or "")
    if issuer.lower() != "self":
        raise _bad(f"The emulated vault issues self-signed certificates only; issuer "
                   f"{issuer or '(none)'!r} is not supported.")
    key = policy.get("key_props") or {}
    kty = str(key.get("kty") or "RSA")
    if kty not in ("RSA", "RSA-HSM"):
        raise _bad(f"Property key_props.kty has an unsupported value {kty!r}.")
    size = key.get("key_size") or 2048
    if size not in RSA_SIZES:
        raise _bad(f"Property key_props.key_size has an invalid value {size!r}; "
                   f"RSA keys are {', '.join(map(str, RSA_SIZES))} bits.")
    x509_props = policy.get("x509_props") or {}
    if not x509_props.get("subject"):
        raise _bad("Property x509_props.subject is required to create a certificate.")
    months = x509_props.get("validity_months") or 12
    if not isinstance(months, int) or not 1 <= months <= 1200:
        raise _bad(f"Property x509_props.validity_months has an invalid value {months!r}.")


def _add_months(when: datetime, months: int) -> datetime:
    year, month = divmod(when.month - 1 + months, 12)
    target_year, target_month = when.year + year, month + 1
    day = when.day
    while True:
        try:
            return when.replace(year=target_year, month=target_month, day=day)
        except ValueError:
            day -= 1


def _self_signed(policy: dict[str, Any]) -> tuple[x509.Certificate, rsa.RSAPrivateKey]:
    key_props = policy.get("key_props") or {}
    x509_props = policy.get("x509_props") or {}
    key = rsa.generate_private_key(public_exponent=65537,
                                   key_size=int(key_props.get("key_size") or 2048))
    try:
        name = x509.Name.from_rfc4514_string(str(x509_props["subject"]))
    except ValueError:
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, str(x509_props["subject"]))])
    now = utcnow()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(_add_months(now, int(x509_props.get("validity_months") or 12)))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def backing_value(cert: x509.Certificate, key: Key | None, content_type: str) -> str:
    """What the backing secret holds: base64 PFX, or PEM key then certificate.

    A key that is not exportable stays out of it (only the certificate is served).
    """
    if content_type == PEM:
        pem = b""
        if key is not None:
            pem += key.private_bytes(serialization.Encoding.PEM,
                                     serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption())
        return (pem + cert.public_bytes(serialization.Encoding.PEM)).decode("ascii")
    blob = pkcs12.serialize_key_and_certificates(None, key, cert, None,
                                                 serialization.NoEncryption())
    return base64.b64encode(blob).decode("ascii")


class CertificateStore:
    """Certificates of one vault; writes the backing secrets into ``secrets``."""

    def __init__(self, secrets_store: VaultStore) -> None:
        self._lock = threading.RLock()
        self._certs: dict[str, _Cert] = {}
        self._secrets = secrets_store

    # ------------------------------------------------------------------ writes

    def import_certificate(
        self, name: str, value: str, *, password: str | None = None,
        policy: dict[str, Any] | None = None, tags: dict[str, str] | None = None,
        enabled: bool = True,
    ) -> CertVersion:
        check_name(name)
        with self._lock:
            self._check_free(name)
            entry = self._certs.get(name.lower())
            merged = copy.deepcopy(policy if policy is not None
                                   else (entry.policy if entry else {}))
            _check_policy(merged, creating=False)
            cert, key = _parse_import(value, password)
            merged.setdefault("secret_props", {"contentType": content_type_of(merged)})
            merged["key_props"] = {**(merged.get("key_props") or {}), **_key_props(key),
                                   "exportable": _exportable(merged)}
            merged.setdefault("x509_props", {})["subject"] = _subject_text(cert)
            merged.setdefault("issuer", {"name": "Unknown"})
            if entry is None:
                entry = self._certs[name.lower()] = _Cert(name, merged)
            entry.policy = merged
            return self._add_version(entry, cert, key, tags or {}, enabled)

    def begin_create(self, name: str, policy: dict[str, Any] | None,
                     tags: dict[str, str] | None, enabled: bool) -> Operation:
        check_name(name)
        with self._lock:
            self._check_free(name)
            entry = self._certs.get(name.lower())
            chosen = copy.deepcopy(policy if policy is not None
                                   else (entry.policy if entry else None))
            if chosen is None:
                raise _bad("A policy is required to create a new certificate.")
            _check_policy(chosen, creating=True)
            self._settle(entry)
            if entry is None:
                entry = self._certs[name.lower()] = _Cert(name, chosen)
            entry.policy = chosen
            op = Operation(name=entry.name, request_id=secrets.token_hex(16), policy=chosen,
                           tags=dict(tags or {}), enabled=enabled)
            entry.operation = op
            return op

    def update(self, name: str, version: str | None, *, enabled: bool | None,
               tags: dict[str, str] | None) -> CertVersion:
        with self._lock:
            found = self._find(name, version)
            if enabled is not None:
                found.enabled = enabled
            if tags is not None:
                found.tags = dict(tags)
            if any(s.version == found.version for s in self._secrets.versions(found.name)):
                self._secrets.update(found.name, found.version, enabled=enabled, tags=tags)
            found.updated = utcnow()
            return found

    def update_policy(self, name: str, changes: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            entry = self._entry(name)
            merged = copy.deepcopy(entry.policy)
            for section, value in changes.items():
                if isinstance(value, dict) and isinstance(merged.get(section), dict):
                    merged[section] = {**merged[section], **value}
                else:
                    merged[section] = copy.deepcopy(value)
            _check_policy(merged, creating=False)
            entry.policy = merged
            return copy.deepcopy(merged)

    # ------------------------------------------------------------------ reads

    def get(self, name: str, version: str | None = None) -> CertVersion:
        with self._lock:
            return self._find(name, version)

    def policy(self, name: str) -> dict[str, Any]:
        with self._lock:
            return copy.deepcopy(self._entry(name).policy)

    def operation(self, name: str) -> Operation:
        with self._lock:
            entry = self._certs.get(name.lower())
            if entry is None or entry.operation is None:
                raise VaultError(404, "PendingCertificateNotFound",
                                 f"Pending certificate not found: {name}")
            self._settle(entry)
            return entry.operation

    def versions(self, name: str) -> list[CertVersion]:
        with self._lock:
            entry = self._certs.get(name.lower())
            self._settle(entry)
            return list(entry.versions) if entry else []

    def names(self) -> list[CertVersion]:
        with self._lock:
            for entry in self._certs.values():
                self._settle(entry)
            return [e.versions[-1] for e in self._certs.values() if e.versions]

    def key_of(self, name: str, version: str | None = None) -> CertVersion:
        """The certificate version whose key ``GET /keys/{name}/{version}`` serves."""
        with self._lock:
            try:
                return self._find(name, version)
            except VaultError:
                what = f"{name}/{version}" if version else name
                raise VaultError(404, "KeyNotFound",
                                 f"A key with (name/id) {what} was not found in this key "
                                 "vault.") from None

    # ------------------------------------------------------------------ internals

    def _check_free(self, name: str) -> None:
        if any(v.kid is None for v in self._secrets.versions(name)):
            # The name belongs to a secret someone wrote: a certificate cannot take it over.
            raise VaultError(
                409, "Conflict",
                f"Certificate {name} cannot be created: a secret with the same name already "
                "exists in this vault, and a certificate's backing secret must have the "
                "certificate's name. Choose another name.")

    def _entry(self, name: str) -> _Cert:
        check_name(name)
        entry = self._certs.get(name.lower())
        self._settle(entry)
        if entry is None or not entry.versions:
            raise _not_found(name)
        return entry

    def _find(self, name: str, version: str | None) -> CertVersion:
        entry = self._entry(name)
        if not version:
            return entry.versions[-1]
        for candidate in entry.versions:
            if candidate.version == version.lower():
                return candidate
        raise _not_found(name, version)

    def _settle(self, entry: _Cert | None) -> None:
        """Finish a pending self-signed create: the key pair and certificate are made now."""
        if entry is None or entry.operation is None or entry.operation.status != "inProgress":
            return
        op = entry.operation
        cert, key = _self_signed(op.policy)
        op.csr = x509.CertificateSigningRequestBuilder().subject_name(cert.subject).sign(
            key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)
        made = self._add_version(entry, cert, key, op.tags, op.enabled)
        op.status = "completed"
        op.version = made.version

    def _add_version(self, entry: _Cert, cert: x509.Certificate, key: Key, tags: dict[str, str],
                     enabled: bool) -> CertVersion:
        now = utcnow()
        version = secrets.token_hex(16)
        exportable = _exportable(entry.policy)
        content_type = content_type_of(entry.policy)
        self._secrets.set(
            entry.name, backing_value(cert, key if exportable else None, content_type),
            content_type=content_type, enabled=enabled, tags=tags,
            nbf=cert.not_valid_before_utc, exp=cert.not_valid_after_utc, version=version,
            kid=f"/keys/{entry.name}/{version}",  # under the vault's URL
        )
        made = CertVersion(name=entry.name, version=version, certificate=cert, key=key,
                           tags={str(k): str(v) for k, v in tags.items()}, enabled=enabled,
                           created=now, updated=now)
        entry.versions.append(made)
        return made
