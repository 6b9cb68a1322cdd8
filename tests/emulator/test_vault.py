"""Key Vault secrets through the real azure-keyvault-secrets clients (sync and async)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError

from rotator.adapters import sdk_clients
from rotator.emulator.runner import RunningEmulator
from tests.emulator.helpers import rotator_credential, token_for


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
async def client(emu: RunningEmulator) -> AsyncIterator[Any]:
    async with rotator_credential(emu) as cred:
        secrets = sdk_clients.make_secret_client(
            emu.env["ROTATOR_VAULT_URL"], cred, ca_bundle=emu.env["ROTATOR_CA_BUNDLE"]
        )
        async with secrets:
            yield secrets


@pytest.fixture
def sync_client(emu: RunningEmulator) -> Iterator[Any]:
    env = emu.env
    cred = sdk_clients.sync_secret_credential(
        env["AZURE_TENANT_ID"],
        env["AZURE_CLIENT_ID"],
        env["AZURE_CLIENT_SECRET"],
        authority_host=env["ROTATOR_AUTHORITY_HOST"],
        ca_bundle=env["ROTATOR_CA_BUNDLE"],
    )
    with sdk_clients.make_sync_secret_client(
        env["ROTATOR_VAULT_URL"], cred, ca_bundle=env["ROTATOR_CA_BUNDLE"]
    ) as secrets:
        yield secrets


async def test_set_get_versions_and_update(emu: RunningEmulator, client: Any) -> None:
    name = _name("app-secret")
    expires = datetime.now(UTC).replace(microsecond=0) + timedelta(days=90)
    first = await client.set_secret(
        name, "one", content_type="text/plain", tags={"keyId": "k1"}, expires_on=expires
    )
    second = await client.set_secret(name, "two", content_type="text/plain", tags={"keyId": "k2"})
    assert first.id == f"{emu.base_url}/secrets/{name}/{first.properties.version}"
    assert len(first.properties.version) == 32
    assert first.properties.expires_on == expires
    assert first.properties.recovery_level == "Recoverable+Purgeable"
    assert (await client.get_secret(name)).value == "two"
    assert (await client.get_secret(name, first.properties.version)).value == "one"
    versions = [v async for v in client.list_properties_of_secret_versions(name)]
    assert {v.version for v in versions} == {first.properties.version, second.properties.version}

    updated = await client.update_secret_properties(
        name, first.properties.version, enabled=False, tags={"state": "old"}
    )
    assert updated.enabled is False and updated.tags == {"state": "old"}
    with pytest.raises(HttpResponseError) as info:
        await client.get_secret(name, first.properties.version)
    assert info.value.status_code == 403
    assert info.value.error.code == "Forbidden"
    inner = info.value.error.innererror
    assert inner and inner["code"] == "SecretDisabled"

    stored = emu.tenant.vault.versions(name)
    assert [v.value for v in stored] == ["one", "two"]
    assert stored[0].tags == {"state": "old"} and not stored[0].enabled


async def test_listing_pages(emu: RunningEmulator, client: Any) -> None:
    name = _name("many")
    for index in range(30):
        await client.set_secret(name, f"v{index}")
    versions = [v async for v in client.list_properties_of_secret_versions(name)]
    assert len(versions) == 30
    names = [s.name async for s in client.list_properties_of_secrets()]
    assert name in names


async def test_errors(client: Any) -> None:
    with pytest.raises(ResourceNotFoundError) as missing:
        await client.get_secret(_name("absent"))
    assert missing.value.error.code == "SecretNotFound"
    with pytest.raises(HttpResponseError) as bad:
        await client.set_secret("bad_name!", "x")
    assert bad.value.status_code == 400
    assert bad.value.error.code == "BadParameter"


def test_soft_delete_recover_purge_sync(emu: RunningEmulator, sync_client: Any) -> None:
    name = _name("staging")
    sync_client.set_secret(name, "v1")
    deleted = sync_client.begin_delete_secret(name, _polling_interval=0).result()
    assert deleted.name == name and deleted.recovery_id
    assert sync_client.get_deleted_secret(name).name == name
    with pytest.raises(ResourceExistsError) as conflict:
        sync_client.set_secret(name, "v2")
    assert conflict.value.status_code == 409
    assert conflict.value.error.code == "Conflict"

    recovered = sync_client.begin_recover_deleted_secret(name, _polling_interval=0).result()
    assert recovered.name == name
    assert sync_client.get_secret(name).value == "v1"

    sync_client.begin_delete_secret(name, _polling_interval=0).result()
    sync_client.purge_deleted_secret(name)
    assert emu.tenant.vault.deleted(name) == []
    assert sync_client.set_secret(name, "fresh").value == "fresh"


async def test_async_delete_and_recover(client: Any) -> None:
    name = _name("async-del")
    await client.set_secret(name, "v")
    deleted = await client.delete_secret(name, _polling_interval=0)
    assert deleted.name == name
    assert name in [d.name async for d in client.list_deleted_secrets()]
    recovered = await client.recover_deleted_secret(name, _polling_interval=0)
    assert recovered.name == name


def test_challenge_and_access(emu: RunningEmulator, http: httpx.Client) -> None:
    challenge = http.get("/secrets/anything/", params={"api-version": "7.5"})
    assert challenge.status_code == 401
    header = challenge.headers["WWW-Authenticate"]
    assert f'authorization="{emu.base_url}/{emu.tenant.tenant_id}"' in header
    assert 'resource="https://vault.azure.net"' in header

    # A valid vault token for an app without vault access is refused.
    client_app = emu.tenant.app_by_display_name("myclient")
    token = token_for(
        http,
        emu,
        client_app.app_id,
        emu.tenant.secret_of("myclient"),
        "https://vault.azure.net/.default",
    ).json()["access_token"]
    refused = http.get("/secrets/anything/", params={"api-version": "7.5"},
                       headers={"Authorization": f"Bearer {token}"})
    assert refused.status_code == 403
    assert refused.json()["error"]["innererror"]["code"] == "ForbiddenByRbac"


async def test_service_limits_are_refused_as_key_vault_refuses_them(
    emu: RunningEmulator, client: Any
) -> None:
    name = _name("limits")
    await client.set_secret(name, "x" * (25 * 1024))  # exactly 25 KB fits
    cases: list[dict[str, Any]] = [
        {"value": "x" * (25 * 1024 + 1)},
        {"value": "v", "tags": {f"t{i}": "v" for i in range(16)}},
        {"value": "v", "content_type": "c" * 256},
    ]
    for case in cases:
        with pytest.raises(HttpResponseError) as info:
            await client.set_secret(name, case.pop("value"), **case)
        assert info.value.status_code == 400
        assert info.value.error is not None and info.value.error.code == "BadParameter"
    ok = await client.set_secret(name, "v", tags={f"t{i}": "v" for i in range(15)},
                                 content_type="c" * 255)
    assert len(ok.properties.tags) == 15
    with pytest.raises(HttpResponseError):
        await client.update_secret_properties(name, ok.properties.version,
                                              tags={f"t{i}": "v" for i in range(16)})


def test_api_version_is_required(emu: RunningEmulator, http: httpx.Client) -> None:
    response = http.get("/secrets/anything/")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "BadParameter"
    assert "api-version" in response.json()["error"]["message"]
