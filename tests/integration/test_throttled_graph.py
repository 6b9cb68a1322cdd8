"""rotator's Graph and Key Vault adapters over the real SDKs against a throttling tenant:
scan paging and writes wait out each Retry-After (and report the wait); a Retry-After
too long for the SDK to sleep through comes back to the engine as a transient error
that carries it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from rotator import throttle_waits
from rotator.adapters import graph as graph_adapter
from rotator.adapters import sdk_clients
from rotator.adapters.graph import GraphDirectory
from rotator.adapters.keyvault import KeyVaultSecretStore
from rotator.domain.secret_value import SecretValue
from rotator.emulator.runner import RunningEmulator
from rotator.ports import DirectoryError, SecretStoreError


@pytest.fixture
def waits() -> Iterator[list[tuple[str, float]]]:
    seen: list[tuple[str, float]] = []
    unsubscribe = throttle_waits.subscribe(lambda service, s: seen.append((service, s)))
    yield seen
    unsubscribe()


@pytest.fixture
async def credential(emu: RunningEmulator) -> AsyncIterator[Any]:
    env = emu.env
    async with sdk_clients.async_secret_credential(
        env["AZURE_TENANT_ID"], env["AZURE_CLIENT_ID"], env["AZURE_CLIENT_SECRET"],
        authority_host=env["ROTATOR_AUTHORITY_HOST"], ca_bundle=env["ROTATOR_CA_BUNDLE"],
    ) as cred:
        yield cred


@pytest.fixture
def directory(emu: RunningEmulator, credential: Any) -> GraphDirectory:
    return GraphDirectory(sdk_clients.make_graph_client(
        credential, graph_url=emu.env["ROTATOR_GRAPH_URL"], ca_bundle=str(emu.ca_file)))


async def test_scan_paging_waits_out_retry_after_and_reads_every_app(
    emu: RunningEmulator, directory: GraphDirectory, waits: list[tuple[str, float]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    everyone = emu.tenant.app_count()
    monkeypatch.setattr(graph_adapter, "PAGE_SIZE", max(2, everyone // 4))
    await directory.get_application(emu.env["AZURE_CLIENT_ID"])  # token first
    # Two pages at once, then one every two seconds: the scan runs into 429s.
    emu.faults.update({"throttle_requests_capacity": 2,
                       "throttle_requests_refill_per_second": 0.5})
    seen = {item.app.app_id async for item in directory.list_applications() if item.app}
    assert len(seen) >= everyone
    assert emu.faults.count_of("graph.list", 429) >= 1
    assert waits and {service for service, _ in waits} == {"graph"}
    assert all(seconds >= 1 for _, seconds in waits)


async def test_a_write_throttled_past_the_sdk_ceiling_is_transient_with_retry_after(
    emu: RunningEmulator, directory: GraphDirectory
) -> None:
    app = emu.tenant.create_app("throttled-write")
    await directory.get_application(app.app_id)
    emu.faults.update({"throttle_app_capacity": 0.5,
                       "throttle_app_refill_per_second": 0.001})
    end = datetime.now(UTC) + timedelta(days=1)
    with pytest.raises(DirectoryError) as info:
        await directory.add_password(app.id, "throttled-write", end)
    error = info.value
    assert error.status == 429 and error.transient
    assert error.retry_after is not None and error.retry_after >= 180
    assert emu.faults.count_of("graph.addPassword", 429) >= 1


async def test_key_vault_throttled_past_retries_is_transient_with_retry_after(
    emu: RunningEmulator, credential: Any, waits: list[tuple[str, float]]
) -> None:
    client = sdk_clients.make_secret_client(
        emu.env["ROTATOR_VAULT_URL"], credential, ca_bundle=str(emu.ca_file))
    async with client:
        store = KeyVaultSecretStore(client)
        await store.set_secret("kv-throttled", SecretValue("v"), content_type="text/plain",
                               tags={})
        emu.faults.update({"vault_throttle_capacity": 0.5,
                           "vault_throttle_refill_per_second": 0.001})
        with pytest.raises(SecretStoreError) as info:
            await store.list_versions("kv-throttled")
    error = info.value
    assert error.status == 429 and error.transient and error.code == "Throttled"
    assert error.retry_after is not None and error.retry_after >= 180
