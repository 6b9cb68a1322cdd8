"""Certificate rotation with the real SDKs against the emulated tenant (SQLite).

The engine runs in process through ``rotator.bootstrap.engine_deps`` (one test goes
through the ``rotator rotate`` CLI); the emulator checks every addKey/removeKey proof,
PATCH of keyCredentials, and the client assertions of the token requests.
"""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest

from rotator import certificate_material as certs
from rotator import logs
from rotator.bootstrap import engine_deps, load, open_store
from rotator.domain.certificates import PEM_CONTENT_TYPE, PKCS12_CONTENT_TYPE, KeyEntry, x5t_of
from rotator.domain.credentials import Credential
from rotator.domain.rotation import Registration, Rotation, RotationReason
from rotator.domain.secret_value import SecretValue
from rotator.emulator.runner import RunningEmulator
from rotator.engine.context import EngineDeps, VerifyTiming
from rotator.engine.driver import drive
from rotator.engine.start import plan_rotation, start_rotation
from rotator.ports import Directory, StoredSecret
from tests.support.certs import CertApp, make_cert_app, policy_file
from tests.support.emulated import rotator_env, run_rotator, token_with
from tests.support.invariants import assert_tenant_invariants


class RecordingDirectory:
    """Passes every call through; remembers proofs and lets a test act as another writer."""

    def __init__(self, inner: Directory) -> None:
        self._inner = inner
        self.proofs: list[tuple[str, str]] = []  # (operation, proof)
        self.after_first_key_read: Any = None
        self._key_reads = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def add_key(self, object_id: str, certificate_der: bytes, display_name: str,
                      proof: str) -> Credential:
        self.proofs.append(("addKey", proof))
        return await self._inner.add_key(object_id, certificate_der, display_name, proof)

    async def remove_key(self, object_id: str, key_id: str, proof: str) -> None:
        self.proofs.append(("removeKey", proof))
        await self._inner.remove_key(object_id, key_id, proof)

    async def list_key_credentials(self, object_id: str) -> Sequence[KeyEntry]:
        entries = await self._inner.list_key_credentials(object_id)
        self._key_reads += 1
        if self._key_reads == 1 and self.after_first_key_read is not None:
            self.after_first_key_read(object_id)
        return entries


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    logs.configure("json", "DEBUG", stream)
    yield stream
    logs.configure()


@asynccontextmanager
async def engine(emu: RunningEmulator, tmp_path: Path, policy: Path
                 ) -> AsyncIterator[tuple[EngineDeps, RecordingDirectory]]:
    env = {**emu.env, "ROTATOR_CONFIG": str(policy),
           "ROTATOR_DATABASE_URL": f"sqlite:///{tmp_path / 'rotator.db'}"}
    loaded = load(env)
    store = open_store(loaded.settings)
    try:
        async with engine_deps(loaded, store, verify_timing=VerifyTiming(
                success_interval=0.2, refusal_base=0.2, refusal_cap=1.0)) as deps:
            recording = RecordingDirectory(deps.directory)
            deps.directory = recording
            yield deps, recording
    finally:
        store.close()


async def rotate(deps: EngineDeps, app: CertApp, *, retire_now: bool = True) -> Rotation:
    plan = await plan_rotation(deps, app.app_id)
    rotation = await start_rotation(deps, plan, reason=RotationReason.MANUAL, retire_now=retire_now)
    return await drive(deps, rotation.id, retire_now=retire_now)


async def consumer(deps: EngineDeps, app: CertApp) -> StoredSecret:
    latest = await deps.secret_store_for(deps.policy.apps[app.app_id].vault_url).get_secret(
        app.secret_name)
    assert latest is not None and latest.value is not None
    return latest


def private_key_body(stored: StoredSecret) -> str:
    assert stored.value is not None
    material = certs.load(stored.value, stored.content_type)
    pem = certs.to_pem(material).reveal()
    return "".join(pem.split("-----BEGIN " "PRIVATE KEY-----")[1]
                   .split("-----END PRIVATE KEY-----")[0].split())


def assert_no_key_leak(bodies: Sequence[str], *texts: str, files: Sequence[Path] = ()) -> None:
    for body in bodies:
        for chunk in (body[40:100], body[-120:-60]):
            assert all(chunk not in text for text in texts)
            for path in files:
                assert chunk.encode() not in path.read_bytes(), path


async def test_patch_first_then_add_key_signed_by_the_stored_key(
    emu: RunningEmulator, tmp_path: Path, log_stream: io.StringIO
) -> None:
    app = make_cert_app(emu, expired=1, unknown=1)
    async with engine(emu, tmp_path, policy_file(tmp_path / "p.toml", app)) as (deps, rec):
        first = await rotate(deps, app)
        assert first.state.value == "completed", first.last_error
        assert first.registered_by is Registration.PATCH
        stored_first = await consumer(deps, app)
        assert stored_first.content_type == PEM_CONTENT_TYPE
        assert stored_first.tags["key_id"] == first.new_key_id
        held = certs.load(stored_first.value, PEM_CONTENT_TYPE)  # type: ignore[arg-type]
        assert stored_first.tags["thumbprint"] == held.thumbprint
        # the unknown certificate was retired with removeKey, proven by the new certificate
        assert first.old_key_id == app.old_key_ids[1]
        assert [op for op, _ in rec.proofs] == ["removeKey"]
        assert jwt.get_unverified_header(rec.proofs[0][1])["x5t"] == x5t_of(held.der)
        remaining = {k.key_id for k in emu.tenant.keys(app.app_id)}
        assert remaining == {app.old_key_ids[0], first.new_key_id}

        second = await rotate(deps, app)
        assert second.state.value == "completed", second.last_error
        assert second.registered_by is Registration.ADD_KEY
        ops = [op for op, _ in rec.proofs]
        assert ops == ["removeKey", "addKey", "removeKey"]
        # addKey proven by the key stored the first time
        assert jwt.get_unverified_header(rec.proofs[1][1])["x5t"] == x5t_of(held.der)
        stored_second = await consumer(deps, app)
        newest = certs.load(stored_second.value, PEM_CONTENT_TYPE)  # type: ignore[arg-type]
        assert jwt.get_unverified_header(rec.proofs[2][1])["x5t"] == x5t_of(newest.der)
        assert {k.key_id for k in emu.tenant.keys(app.app_id)} == {
            app.old_key_ids[0], second.new_key_id}
        assert emu.faults.count_of("graph.addKey", 200) >= 1
        claims = token_with(emu, app.app_id, stored_second)
        assert claims["appid"] == app.app_id and claims["appidacr"] == "2"
    assert_no_key_leak([private_key_body(stored_first), private_key_body(stored_second)],
                       log_stream.getvalue(), files=list(tmp_path.glob("rotator.db*")))
    assert "registered" in log_stream.getvalue()  # the logs did capture the rotation
    assert_tenant_invariants(emu, f"sqlite:///{tmp_path / 'rotator.db'}", [app.managed],
                             outputs=[log_stream.getvalue()])


@pytest.mark.parametrize("fmt", ["pem", "pkcs12"])
async def test_every_certificate_expired_uses_patch_and_consumers_get_tokens(
    emu: RunningEmulator, tmp_path: Path, fmt: str
) -> None:
    app = make_cert_app(emu, expired=2)
    async with engine(emu, tmp_path, policy_file(tmp_path / "p.toml", app, fmt)) as (deps, rec):
        result = await rotate(deps, app)
        assert result.state.value == "completed", result.last_error
        assert result.registered_by is Registration.PATCH
        assert result.old_key_id is None  # nothing valid was superseded; nothing retired
        assert not rec.proofs
        stored = await consumer(deps, app)
    assert stored.content_type == (PKCS12_CONTENT_TYPE if fmt == "pkcs12" else PEM_CONTENT_TYPE)
    keys = {k.key_id for k in emu.tenant.keys(app.app_id)}
    assert keys == {*app.old_key_ids, result.new_key_id}
    claims = token_with(emu, app.app_id, stored)
    assert claims["appid"] == app.app_id and claims["appidacr"] == "2"


async def test_patch_racing_another_writer_keeps_that_writers_certificate(
    emu: RunningEmulator, tmp_path: Path
) -> None:
    app = make_cert_app(emu, expired=1)
    now = datetime.now(UTC)
    theirs = certs.generate("RSA2048", "CN=other-writer", now, now + timedelta(days=60))
    added: list[str] = []

    def other_writer(object_id: str) -> None:
        # Lands between rotator's read of keyCredentials and its PATCH.
        added.append(emu.tenant.add_certificate(object_id, theirs.der, "other writer").key_id)

    async with engine(emu, tmp_path, policy_file(tmp_path / "p.toml", app)) as (deps, rec):
        rec.after_first_key_read = other_writer
        result = await rotate(deps, app, retire_now=False)
    assert result.state.value == "promoted", result.last_error
    keys = {k.key_id for k in emu.tenant.keys(app.app_id)}
    assert added and added[0] in keys
    assert keys == {*app.old_key_ids, added[0], result.new_key_id}


def test_cli_rotation_keeps_the_private_key_out_of_output_and_database(
    emu: RunningEmulator, tmp_path: Path
) -> None:
    app = make_cert_app(emu, unknown=1)
    database = f"sqlite:///{tmp_path / 'cli.db'}"
    env = rotator_env(emu, database, policy_file(tmp_path / "p.toml", app, "pkcs12"))
    run = run_rotator(["rotate", "--app", app.app_id, "--retire-now", "--json"], env)
    assert run.returncode == 0, run.stderr[-3000:]
    out = json.loads(run.stdout)
    assert out["state"] == "completed" and out["kind"] == "certificate"
    assert {k.key_id for k in emu.tenant.keys(app.app_id)} == {out["new_key_id"]}
    bodies, thumbprint = _consumer_key(emu, app)
    scan = run_rotator(["scan", "--json"], env)
    assert scan.returncode == 0, scan.stderr[-2000:]
    rows = [r for r in json.loads(scan.stdout)["credentials"] if r["app_id"] == app.app_id]
    assert [(r["kind"], r["thumbprint"]) for r in rows] == [("certificate", thumbprint)]
    assert_no_key_leak(bodies, run.stdout, run.stderr, scan.stdout, scan.stderr,
                       files=list(tmp_path.glob("cli.db*")))
    assert_tenant_invariants(emu, database, [app.managed],
                             outputs=[run.stdout, run.stderr, scan.stdout, scan.stderr])


def _consumer_key(emu: RunningEmulator, app: CertApp) -> tuple[list[str], str]:
    """The consumer secret read as a consumer would; it must get a token."""
    from azure.keyvault.secrets import SecretClient

    from rotator.adapters.sdk_clients import make_sync_secret_client, sync_secret_credential

    env = emu.env
    cred = sync_secret_credential(env["AZURE_TENANT_ID"], env["AZURE_CLIENT_ID"],
                                  env["AZURE_CLIENT_SECRET"],
                                  authority_host=env["ROTATOR_AUTHORITY_HOST"],
                                  ca_bundle=env["ROTATOR_CA_BUNDLE"])
    client: SecretClient = make_sync_secret_client(env["ROTATOR_VAULT_URL"], cred,
                                                   ca_bundle=env["ROTATOR_CA_BUNDLE"])
    latest = client.get_secret(app.secret_name)
    stored = StoredSecret(latest.name or "", latest.properties.version or "", True,
                          latest.properties.content_type, dict(latest.properties.tags or {}),
                          value=SecretValue(latest.value or ""))
    assert stored.content_type == PKCS12_CONTENT_TYPE
    token_claims = token_with(emu, app.app_id, stored)
    assert token_claims["appidacr"] == "2"
    return [private_key_body(stored)], stored.tags["thumbprint"]
