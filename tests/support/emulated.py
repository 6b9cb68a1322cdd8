"""Tests against the emulated tenant with the rotator command as a real process.

The integration suite and the crash matrix share these: one session-wide emulated
tenant (``emu``), a database of each kind (``database_url``), apps whose secret
holds a greppable canary, a policy for them, ``rotator`` run as a subprocess, and a
token requested the way a consumer would. Their conftests import the fixtures.
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest

from rotator.adapters.db import migrate
from rotator.adapters.sdk_clients import sync_secret_credential
from rotator.domain.certificates import PKCS12_CONTENT_TYPE
from rotator.emulator.runner import RunningEmulator, start_emulator
from rotator.emulator.vaultstore import SecretVersion
from rotator.ports import StoredSecret
from tests.support.databases import throwaway_pg_database

CANARY = "CANARY"


@pytest.fixture(scope="session")
def emu(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningEmulator]:
    with start_emulator(apps=10, seed=11, propagation_seconds=2.0,
                        workdir=tmp_path_factory.mktemp("emu")) as running:
        yield running


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    with throwaway_pg_database() as url:
        migrate.upgrade(url)
        yield url


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'rotator.db'}"
    url: str = request.getfixturevalue("pg_database")
    return url


@dataclass
class ManagedApp:
    app_id: str
    object_id: str
    display_name: str
    old_key_id: str
    old_secret: str
    secret_name: str


def make_app(emu: RunningEmulator, *, days_left: float = 10, owned: bool = True,
             name: str | None = None) -> ManagedApp:
    """A fresh app whose one secret holds a canary value (so leaks are greppable)."""
    display = name or f"it-{uuid.uuid4().hex[:8]}"
    value = f"{CANARY}-{uuid.uuid4().hex}"
    end = datetime.now(UTC) + timedelta(days=days_left)
    app = emu.tenant.create_app(display, owned_by_rotator=owned, secrets=[(value, end)])
    old = emu.tenant.passwords(app.app_id)[0]
    return ManagedApp(app.app_id, app.id, display, old.key_id, value,
                      f"{display}-secret")


def write_policy(path: Path, apps: list[ManagedApp], **defaults: object) -> Path:
    merged: dict[str, object] = {"verify_successes": 3, "verify_timeout_seconds": 60,
                                 "grace_hours": 24, **defaults}
    lines = ["[defaults]"] + [f"{k} = {v}" for k, v in merged.items()]
    for a in apps:
        lines += ["[[app]]", f'app_id = "{a.app_id}"', f'secret_name = "{a.secret_name}"']
    path.write_text("\n".join(lines) + "\n")
    return path


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str


def rotator_env(emu: RunningEmulator, database_url: str, policy: Path | None,
                **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("ROTATOR_", "AZURE_"))}
    env.update(emu.env)
    env["ROTATOR_DATABASE_URL"] = database_url
    env["ROTATOR_LOG_LEVEL"] = "DEBUG"
    env["ROTATOR_LOG_FORMAT"] = "json"
    if policy is not None:
        env["ROTATOR_CONFIG"] = str(policy)
    env.update(extra)
    return env


def run_rotator(args: list[str], env: Mapping[str, str], timeout: float = 180) -> Run:
    proc = subprocess.run([sys.executable, "-m", "rotator", *args], env=dict(env),
                          capture_output=True, text=True, timeout=timeout, check=False)
    return Run(proc.returncode, proc.stdout, proc.stderr)


def consumer_latest(emu: RunningEmulator, app: ManagedApp) -> SecretVersion | None:
    versions = emu.tenant.vault.versions(app.secret_name)
    return versions[-1] if versions else None


def token_works(emu: RunningEmulator, app_id: str, secret: str, tries: int = 20) -> bool:
    """A real client-credentials request; retried briefly because replicas learn late."""
    for _ in range(tries):
        credential = sync_secret_credential(
            emu.env["AZURE_TENANT_ID"], app_id, secret,
            authority_host=emu.env["ROTATOR_AUTHORITY_HOST"],
            ca_bundle=emu.env["ROTATOR_CA_BUNDLE"],
        )
        try:
            credential.get_token("https://graph.microsoft.com/.default")
            return True
        except Exception:
            time.sleep(0.5)
        finally:
            credential.close()
    return False


def token_with(emu: RunningEmulator, app_id: str, stored: StoredSecret) -> dict[str, Any]:
    """What a consumer does: hand the secret to azure-identity's CertificateCredential."""
    from azure.identity import CertificateCredential

    from rotator.adapters.sdk_clients import identity_options

    assert stored.value is not None
    data = stored.value.reveal().encode()
    if stored.content_type == PKCS12_CONTENT_TYPE:
        data = base64.b64decode(data)
    options: dict[str, Any] = identity_options(emu.env["ROTATOR_AUTHORITY_HOST"],
                                               emu.env["ROTATOR_CA_BUNDLE"])
    credential = CertificateCredential(emu.tenant.tenant_id, app_id, certificate_data=data,
                                       **options)
    token = credential.get_token("https://graph.microsoft.com/.default")
    claims: dict[str, Any] = jwt.decode(token.token, options={"verify_signature": False})
    return claims
