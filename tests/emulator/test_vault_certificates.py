"""Key Vault certificates through the real azure-keyvault-certificates client over HTTPS:
import (PFX and PEM), create as a long-running operation, versions, enable/disable, the
policy, and the backing secret and key of the same name and version."""

from __future__ import annotations

import base64
import hashlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.keyvault.certificates import (
    CertificateContentType,
    CertificatePolicy,
    KeyType,
    WellKnownIssuerNames,
)
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12

from rotator.adapters import sdk_clients
from rotator.emulator.runner import RunningEmulator
from tests.emulator.helpers import make_cert, rotator_credential, token_for
from tests.support.certs import Cert


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
async def clients(emu: RunningEmulator) -> AsyncIterator[tuple[Any, Any]]:
    async with rotator_credential(emu) as cred:
        url, ca = emu.env["ROTATOR_VAULT_URL"], emu.env["ROTATOR_CA_BUNDLE"]
        certificates = sdk_clients.make_certificate_client(url, cred, ca_bundle=ca)
        secrets = sdk_clients.make_secret_client(url, cred, ca_bundle=ca)
        async with certificates, secrets:
            yield certificates, secrets


def _pfx(cert: Cert) -> bytes:
    return pkcs12.serialize_key_and_certificates(
        None, cert.key, x509.load_der_x509_certificate(cert.der), None,
        serialization.NoEncryption())


def _pem_policy() -> CertificatePolicy:
    return CertificatePolicy(content_type=CertificateContentType.pem)


async def test_import_pfx_then_pem_versions_and_backing_secret(clients: tuple[Any, Any]) -> None:
    certificates, secrets = clients
    name = _name("imported")
    first, second = make_cert("first"), make_cert("second")
    one = await certificates.import_certificate(name, _pfx(first), tags={"rotation_id": "r1"})
    assert bytes(one.cer) == first.der
    assert one.properties.x509_thumbprint == hashlib.sha1(first.der).digest()
    assert one.policy.content_type == CertificateContentType.pkcs12
    assert one.secret_id.endswith(f"/secrets/{name}/{one.properties.version}")
    assert one.key_id.endswith(f"/keys/{name}/{one.properties.version}")
    # The backing secret: base64 PFX with the private key, same name and version.
    backing = await secrets.get_secret(name, one.properties.version)
    assert backing.properties.content_type == "application/x-pkcs12"
    key, cert, _ = pkcs12.load_key_and_certificates(base64.b64decode(backing.value), None)
    assert cert is not None and cert.public_bytes(serialization.Encoding.DER) == first.der
    assert isinstance(key, rsa.RSAPrivateKey)
    assert key.private_numbers() == first.key.private_numbers()
    assert backing.properties.key_id == one.key_id

    # PEM: the policy says so, and the backing secret then serves PEM (key, certificate).
    two = await certificates.import_certificate(
        name, second.pem, policy=_pem_policy(),
        tags={"rotation_id": "r2"})
    assert (await certificates.get_certificate(name)).properties.version == two.properties.version
    pem = (await secrets.get_secret(name)).value
    # The key comes first, and it is the key of the certificate imported.
    key = serialization.load_pem_private_key(pem.encode(), password=None)
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    assert key.public_key().public_bytes(*spki) == x509.load_pem_x509_certificate(
        pem.encode()).public_key().public_bytes(*spki)
    assert x509.load_pem_x509_certificate(pem.encode()).public_bytes(
        serialization.Encoding.DER) == second.der
    versions = [v async for v in certificates.list_properties_of_certificate_versions(name)]
    assert {v.version for v in versions} == {one.properties.version, two.properties.version}
    assert {v.tags["rotation_id"] for v in versions} == {"r1", "r2"}
    older = await certificates.get_certificate_version(name, one.properties.version)
    assert bytes(older.cer) == first.der
    assert (await certificates.get_certificate_policy(name)).content_type == (
        CertificateContentType.pem)


async def test_disable_a_version_disables_its_backing_secret(clients: tuple[Any, Any]) -> None:
    certificates, secrets = clients
    name = _name("toggled")
    made = await certificates.import_certificate(name, _pfx(make_cert()))
    version = made.properties.version
    updated = await certificates.update_certificate_properties(name, version, enabled=False,
                                                               tags={"stage": "retired"})
    assert updated.properties.enabled is False
    assert updated.properties.tags == {"stage": "retired"}
    with pytest.raises(HttpResponseError) as refused:
        await secrets.get_secret(name, version)
    assert refused.value.status_code == 403
    await certificates.update_certificate_properties(name, version, enabled=True)
    assert (await secrets.get_secret(name, version)).value


async def test_create_self_signed_is_a_long_running_operation(
    clients: tuple[Any, Any], emu: RunningEmulator, http: httpx.Client
) -> None:
    certificates, secrets = clients
    name = _name("made")
    policy = CertificatePolicy(
        issuer_name=WellKnownIssuerNames.self, subject="CN=made-in-vault", exportable=True,
        key_type=KeyType.rsa, key_size=3072, reuse_key=False,
        content_type=CertificateContentType.pkcs12, validity_in_months=3)
    made = await certificates.create_certificate(name, policy, tags={"rotation_id": "r9"},
                                                 _polling_interval=0.05)
    cert = x509.load_der_x509_certificate(bytes(made.cer))
    assert cert.subject.rfc4514_string() == "CN=made-in-vault"
    assert 85 <= (cert.not_valid_after_utc - cert.not_valid_before_utc).days <= 93
    assert made.properties.tags == {"rotation_id": "r9"}
    operation = await certificates.get_certificate_operation(name)
    assert operation.status == "completed" and operation.target is not None
    # The vault made the key pair: its backing secret holds the matching private key.
    backing = await secrets.get_secret(name, made.properties.version)
    key, _, _ = pkcs12.load_key_and_certificates(base64.b64decode(backing.value), None)
    assert isinstance(key, rsa.RSAPrivateKey) and key.key_size == 3072
    assert key.public_key().public_numbers() == cert.public_key().public_numbers()  # type: ignore[union-attr]
    # The backing key serves the public half only.
    token = token_for(http, emu, emu.env["AZURE_CLIENT_ID"], emu.env["AZURE_CLIENT_SECRET"],
                      "https://vault.azure.net/.default").json()["access_token"]
    key_doc = http.get(f"/keys/{name}/{made.properties.version}?api-version=7.5",
                       headers={"Authorization": f"Bearer {token}"}).json()
    assert key_doc["managed"] is True and key_doc["key"]["kty"] == "RSA"
    assert "d" not in key_doc["key"]
    n = int.from_bytes(base64.urlsafe_b64decode(key_doc["key"]["n"] + "=="), "big")
    assert n == key.public_key().public_numbers().n


async def test_refusals_have_key_vault_shapes(clients: tuple[Any, Any]) -> None:
    certificates, secrets = clients
    taken = _name("plain-secret")
    await secrets.set_secret(taken, "a value someone wrote")
    with pytest.raises(HttpResponseError) as conflict:
        await certificates.import_certificate(taken, _pfx(make_cert()))
    assert conflict.value.status_code == 409
    with pytest.raises(ResourceNotFoundError) as missing:
        await certificates.get_certificate(_name("absent"))
    assert missing.value.error is not None and missing.value.error.code == "CertificateNotFound"
    with pytest.raises(HttpResponseError) as no_key:
        cert_only = x509.load_pem_x509_certificate(make_cert().pem).public_bytes(
            serialization.Encoding.PEM)
        await certificates.import_certificate(_name("nokey"), cert_only, policy=_pem_policy())
    assert no_key.value.status_code == 400
    assert no_key.value.error is not None and no_key.value.error.code == "BadParameter"
    unsupported = CertificatePolicy(issuer_name=WellKnownIssuerNames.self, subject="CN=x",
                                    key_type=KeyType.rsa, key_size=1024)
    with pytest.raises(HttpResponseError) as small:
        await certificates.create_certificate(_name("small"), unsupported,
                                              _polling_interval=0.05)
    assert small.value.status_code == 400 and "key_size" in str(small.value)
