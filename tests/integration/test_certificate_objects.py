"""key_vault_format = "certificate" and key_source = "keyvault", end to end with the real
SDKs (Graph, azure-identity, azure-keyvault-certificates and -secrets) against the emulator.

After each rotation a consumer reads the certificate the way Microsoft.Identity.Web's
Key Vault certificate source does (get the certificate, then its backing secret with
the private key) and gets a token with it.
"""

from __future__ import annotations

import base64
import io
import os
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import jwt
import pytest
from azure.identity import CertificateCredential
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from rotator import certificate_material as certs
from rotator import logs
from rotator.bootstrap import engine_deps, load, open_store
from rotator.domain.rotation import Registration, Rotation, RotationReason
from rotator.emulator.runner import RunningEmulator
from rotator.engine.context import EngineDeps, VerifyTiming
from rotator.engine.driver import drive
from rotator.engine.start import plan_rotation, start_rotation
from rotator.failpoints import FailpointError
from tests.support.certs import CertApp, make_cert_app
from tests.support.invariants import assert_tenant_invariants


def policy_file(path: Path, app: CertApp, *, content: str = "pkcs12",
                key_source: str = "rotator", key_type: str = "RSA2048") -> Path:
    path.write_text("\n".join([
        "[defaults]", "verify_successes = 2", "verify_timeout_seconds = 60", "grace_hours = 24",
        "lifetime_days = 90", "[[app]]", f'app_id = "{app.app_id}"',
        f'secret_name = "{app.secret_name}"', 'credential = "certificate"',
        'key_vault_format = "certificate"', f'certificate_content_type = "{content}"',
        f'key_source = "{key_source}"', f'key_type = "{key_type}"',
        'certificate_subject = "CN=rotator-objects"',
    ]) + "\n")
    return path


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    logs.configure("json", "DEBUG", stream)
    yield stream
    logs.configure()


@asynccontextmanager
async def engine(emu: RunningEmulator, tmp_path: Path, policy: Path) -> AsyncIterator[EngineDeps]:
    env = {**emu.env, "ROTATOR_CONFIG": str(policy),
           "ROTATOR_DATABASE_URL": f"sqlite:///{tmp_path / 'rotator.db'}"}
    loaded = load(env)
    store = open_store(loaded.settings)
    try:
        async with engine_deps(loaded, store, verify_timing=VerifyTiming(
                success_interval=0.2, refusal_base=0.2, refusal_cap=1.0)) as deps:
            yield deps
    finally:
        store.close()


async def rotate(deps: EngineDeps, app: CertApp) -> Rotation:
    plan = await plan_rotation(deps, app.app_id)
    rotation = await start_rotation(deps, plan, reason=RotationReason.MANUAL, retire_now=True)
    return await drive(deps, rotation.id, retire_now=True)


def consumer_loads(emu: RunningEmulator, app: CertApp) -> tuple[x509.Certificate, Any, str]:
    """Microsoft.Identity.Web's way: the certificate, then the secret its ``sid`` names;
    returns the certificate, its private key and the token's appid."""
    from azure.identity import ClientSecretCredential
    from azure.keyvault.certificates import CertificateClient
    from azure.keyvault.secrets import KeyVaultSecretIdentifier, SecretClient

    env = emu.env
    ca = env["ROTATOR_CA_BUNDLE"]
    cred = ClientSecretCredential(env["AZURE_TENANT_ID"], env["AZURE_CLIENT_ID"],
                                  env["AZURE_CLIENT_SECRET"],
                                  authority=env["ROTATOR_AUTHORITY_HOST"],
                                  disable_instance_discovery=True, connection_verify=ca)
    options: dict[str, Any] = {"verify_challenge_resource": False, "connection_verify": ca}
    with CertificateClient(env["ROTATOR_VAULT_URL"], cred, **options) as certificates, \
            SecretClient(env["ROTATOR_VAULT_URL"], cred, **options) as secrets:
        certificate = certificates.get_certificate(app.secret_name)
        assert certificate.secret_id is not None
        sid = KeyVaultSecretIdentifier(certificate.secret_id)
        secret = secrets.get_secret(sid.name, sid.version)
    assert secret.value is not None
    if secret.properties.content_type == "application/x-pkcs12":
        key, cert, _ = pkcs12.load_key_and_certificates(base64.b64decode(secret.value), None)
        assert cert is not None
        data = pkcs12.serialize_key_and_certificates(
            None, key, cert, None, serialization.NoEncryption())  # type: ignore[arg-type]
    else:
        data = secret.value.encode()
        key = serialization.load_pem_private_key(data, None)
        cert = x509.load_pem_x509_certificate(data)
    assert cert.public_bytes(serialization.Encoding.DER) == bytes(certificate.cer or b"")
    credential = CertificateCredential(
        env["AZURE_TENANT_ID"], app.app_id, certificate_data=data,
        authority=env["ROTATOR_AUTHORITY_HOST"], disable_instance_discovery=True,
        connection_verify=ca)
    token = credential.get_token("https://graph.microsoft.com/.default")
    claims = jwt.decode(token.token, options={"verify_signature": False})
    return cert, key, str(claims["appid"])


def private_key_text(key: Any) -> str:
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    return "".join(pem.splitlines()[1:-1])


async def test_certificate_objects_staged_promoted_and_read_like_a_consumer(
    emu: RunningEmulator, tmp_path: Path, log_stream: io.StringIO
) -> None:
    content = "pkcs12"  # PEM goes through the key_source = "keyvault" test
    app = make_cert_app(emu, unknown=1)
    staging = f"{app.secret_name}-next"
    async with engine(emu, tmp_path, policy_file(tmp_path / "p.toml", app,
                                                 content=content)) as deps:
        first = await rotate(deps, app)
        assert first.state.value == "completed", first.last_error
        assert first.registered_by is Registration.PATCH
        cert, key_one, appid = consumer_loads(emu, app)
        assert appid == app.app_id
        assert certs.thumbprint_of(cert.public_bytes(serialization.Encoding.DER)) == (
            first.thumbprint)
        # A second rotation: addKey proven by the key in the consumer certificate.
        second = await rotate(deps, app)
        assert second.state.value == "completed", second.last_error
        assert second.registered_by is Registration.ADD_KEY
        _, key_two, appid = consumer_loads(emu, app)
        assert appid == app.app_id
    assert {k.key_id for k in emu.tenant.keys(app.app_id)} == {second.new_key_id}
    # Certificate objects, not secrets rotator wrote: every version is an import.
    consumer_versions = emu.tenant.certificates.versions(app.secret_name)
    assert [v.tags["rotation_id"] for v in consumer_versions] == [first.id, second.id]
    staged = emu.tenant.certificates.versions(staging)
    assert [v.tags["rotation_id"] for v in staged] == [first.id, second.id]
    assert not any(v.enabled for v in staged), "staged versions are disabled after promote"
    expected = "application/x-pkcs12" if content == "pkcs12" else "application/x-pem-file"
    assert emu.tenant.vault.get(app.secret_name).content_type == expected
    assert_no_key_in(log_stream.getvalue(), tmp_path, key_one, key_two)
    assert_tenant_invariants(emu, f"sqlite:///{tmp_path / 'rotator.db'}", [app.managed],
                             outputs=[log_stream.getvalue()])


async def test_key_vault_makes_the_key_pair_and_rotator_never_does(
    emu: RunningEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    log_stream: io.StringIO,
) -> None:
    def refuse(*_: object, **__: object) -> None:
        raise AssertionError("a private key was generated in rotator's process")

    app = make_cert_app(emu, unknown=1)  # (the test's own old certificate is made here)
    # key_source = "keyvault": from here on nothing in rotator may make a key pair.
    monkeypatch.setattr(certs, "generate", refuse)
    monkeypatch.setattr(certs, "_new_key", refuse)
    staging = f"{app.secret_name}-next"
    async with engine(emu, tmp_path, policy_file(tmp_path / "p.toml", app, key_source="keyvault",
                                                 key_type="RSA3072", content="pem")) as deps:
        first = await rotate(deps, app)
        assert first.state.value == "completed", first.last_error
        second = await rotate(deps, app)
        assert second.state.value == "completed", second.last_error
        assert second.registered_by is Registration.ADD_KEY
    cert, key, appid = consumer_loads(emu, app)
    assert appid == app.app_id and key.key_size == 3072
    assert emu.tenant.vault.get(app.secret_name).content_type == "application/x-pem-file"
    # The key the consumer holds is the one the vault made for the staging certificate.
    made = [v for v in emu.tenant.certificates.versions(staging)
            if v.tags["rotation_id"] == second.id]
    assert len(made) == 1 and made[0].key is not None
    assert made[0].key.private_numbers() == key.private_numbers()
    assert emu.tenant.certificates.operation(staging).status == "completed"
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert 85 <= lifetime.days <= 95  # lifetime_days = 90: three whole months
    assert_no_key_in(log_stream.getvalue(), tmp_path, key)
    assert_tenant_invariants(emu, f"sqlite:///{tmp_path / 'rotator.db'}", [app.managed],
                             outputs=[log_stream.getvalue()])


# Key Vault's create is crashed after by the crash matrix (real processes, SIGKILL).
def assert_no_key_in(logged: str, workdir: Path, *keys: Any) -> None:
    """No piece of any private key in the logs or the database files."""
    assert "rotation" in logged  # the logs did capture the rotations
    for key in keys:
        body = private_key_text(key)
        for chunk in (body[40:100], body[-120:-60]):
            assert chunk not in logged
            for path in workdir.glob("rotator.db*"):
                assert chunk.encode() not in path.read_bytes(), path


@pytest.mark.parametrize(("key_source", "point"), [
    ("rotator", "after:vault.import_certificate.staging"),
    ("keyvault", "after:vault.import_certificate.consumer"),
])
async def test_a_crash_right_after_a_vault_write_converges_on_the_next_run(
    emu: RunningEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, key_source: str,
    point: str,
) -> None:
    app = make_cert_app(emu, unknown=1)
    monkeypatch.setitem(os.environ, "ROTATOR_ENABLE_FAILPOINTS", "1")
    monkeypatch.setitem(os.environ, "ROTATOR_FAILPOINTS", f"{point}=raise")
    policy = policy_file(tmp_path / "p.toml", app, key_source=key_source)
    async with engine(emu, tmp_path, policy) as deps:
        plan = await plan_rotation(deps, app.app_id)
        rotation = await start_rotation(deps, plan, reason=RotationReason.MANUAL, retire_now=True)
        with pytest.raises(FailpointError):
            await drive(deps, rotation.id, retire_now=True)
        owner = deps.owner
    monkeypatch.delitem(os.environ, "ROTATOR_FAILPOINTS")
    async with engine(emu, tmp_path, policy) as deps:
        # The run that stopped holds the lease; the next run goes on as that owner (the
        # crash matrix does the same with real processes killed and restarted).
        deps.owner = owner
        done = await drive(deps, rotation.id, retire_now=True)
    assert done.state.value == "completed", done.last_error
    staged = emu.tenant.certificates.versions(f"{app.secret_name}-next")
    # Converged on what the crashed run wrote: one staged version, not a second one.
    assert [v.tags["rotation_id"] for v in staged] == [rotation.id]
    consumer = emu.tenant.certificates.versions(app.secret_name)
    assert [v.tags["rotation_id"] for v in consumer] == [rotation.id]
    _, _, appid = consumer_loads(emu, app)
    assert appid == app.app_id
    assert {k.key_id for k in emu.tenant.keys(app.app_id)} == {done.new_key_id}
    assert_tenant_invariants(emu, f"sqlite:///{tmp_path / 'rotator.db'}", [app.managed],
                             outputs=[])
