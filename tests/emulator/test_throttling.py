"""Throttling through the real SDKs: Graph reads and writes share a request budget, Key
Vault has its own, and every 429 — throttled or injected — says when to come back.

Each test lowers one budget (or injects one answer) by its fault key; the realistic
defaults are far above anything a test does."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError
from msgraph.generated.applications.item.add_password.add_password_post_request_body import (
    AddPasswordPostRequestBody,
)
from msgraph.generated.models.o_data_errors.o_data_error import ODataError
from msgraph.generated.models.password_credential import PasswordCredential

from rotator import throttle_waits
from rotator.adapters import sdk_clients
from rotator.emulator.faults import Faults, with_budgets
from rotator.emulator.runner import RunningEmulator
from tests.emulator.helpers import rotator_credential

# A refill this slow asks for a wait past kiota's retry ceiling (180 s), so the SDK hands
# the 429 over at once instead of sleeping.
NEVER = 0.001


@pytest.fixture
async def graph(emu: RunningEmulator) -> AsyncIterator[Any]:
    async with rotator_credential(emu) as cred:
        yield sdk_clients.make_graph_client(
            cred, graph_url=emu.env["ROTATOR_GRAPH_URL"], ca_bundle=emu.env["ROTATOR_CA_BUNDLE"]
        )


@pytest.fixture
async def vault(emu: RunningEmulator) -> AsyncIterator[Any]:
    async with rotator_credential(emu) as cred:
        client = sdk_clients.make_secret_client(
            emu.env["ROTATOR_VAULT_URL"], cred, ca_bundle=emu.env["ROTATOR_CA_BUNDLE"]
        )
        async with client:
            yield client


@pytest.fixture
def waits() -> Iterator[list[tuple[str, float]]]:
    seen: list[tuple[str, float]] = []

    def listener(service: str, seconds: float) -> None:
        seen.append((service, seconds))

    unsubscribe = throttle_waits.subscribe(listener)
    yield seen
    unsubscribe()


def test_realistic_budgets_are_on_by_default() -> None:
    faults = Faults()
    assert faults.throttle_requests_capacity == 3500
    assert faults.throttle_app_capacity == 3000
    assert faults.throttle_tenant_capacity == 18000
    assert faults.vault_throttle_capacity == 4000
    # The command's flags: a budget per 10 s (per 150 s for writes); 0 turns one off.
    flagged = with_budgets(graph_requests_per_10s=100, graph_writes_per_150s=0,
                           vault_requests_per_10s=50)
    assert flagged.throttle_requests_capacity == 100
    assert flagged.throttle_requests_refill_per_second == 10
    assert flagged.throttle_app_capacity is None
    assert flagged.vault_throttle_capacity == 50
    assert flagged.vault_throttle_refill_per_second == 5


async def test_reads_spend_the_graph_budget_and_writes_share_it(
    emu: RunningEmulator, graph: Any
) -> None:
    app = emu.tenant.create_app("read-budget")
    item = graph.applications.by_application_id(app.id)
    await item.get()  # warms the token up, so the budget below counts Graph calls only
    emu.faults.update({"throttle_requests_capacity": 2,
                       "throttle_requests_refill_per_second": NEVER})
    await item.get()
    await item.get()
    with pytest.raises(ODataError) as info:
        await item.get()
    error = info.value
    assert error.response_status_code == 429
    assert error.error.code == "TooManyRequests"
    seconds = int(error.response_headers["retry-after"])
    assert seconds >= 180
    assert f"Please try after {seconds} seconds" in (error.error.message or "")
    # A write is refused by the same exhausted budget, with the same words.
    body = AddPasswordPostRequestBody(
        password_credential=PasswordCredential(end_date_time=datetime.now(UTC) + timedelta(1))
    )
    with pytest.raises(ODataError) as info:
        await item.add_password.post(body)
    assert info.value.response_status_code == 429
    assert "retry-after" in info.value.response_headers
    assert emu.tenant.passwords(app.app_id) == []


async def test_graph_sdk_waits_out_a_short_retry_after_and_the_wait_is_reported(
    emu: RunningEmulator, graph: Any, waits: list[tuple[str, float]]
) -> None:
    app = emu.tenant.create_app("read-waits")
    item = graph.applications.by_application_id(app.id)
    await item.get()
    emu.faults.update({"throttle_requests_capacity": 1,
                       "throttle_requests_refill_per_second": 0.5})
    await item.get()
    fetched = await item.get()  # 429 + Retry-After (2 s), retried by kiota after it
    assert fetched.id == app.id
    assert emu.faults.count_of("graph.get", 429) >= 1
    assert [s for s, seconds in waits if seconds >= 1] == ["graph"]


async def test_key_vault_has_its_own_budget(
    emu: RunningEmulator, vault: Any, graph: Any
) -> None:
    await vault.set_secret("vault-budget", "value-1")
    emu.faults.update({"vault_throttle_capacity": 1, "vault_throttle_refill_per_second": NEVER})
    await vault.get_secret("vault-budget")
    with pytest.raises(HttpResponseError) as info:
        await vault.get_secret("vault-budget", retry_total=0)
    error = info.value
    assert error.status_code == 429
    assert error.error is not None and error.error.code == "Throttled"
    assert "too many requests" in (error.error.message or "")
    assert int(error.response.headers["Retry-After"]) >= 180
    # Graph's budget is a different one: a read still goes through.
    app = emu.tenant.create_app("vault-budget-graph")
    assert (await graph.applications.by_application_id(app.id).get()).id == app.id


async def test_key_vault_sdk_waits_out_a_short_retry_after_and_the_wait_is_reported(
    emu: RunningEmulator, vault: Any, waits: list[tuple[str, float]]
) -> None:
    await vault.set_secret("vault-waits", "value-1")
    emu.faults.update({"vault_throttle_capacity": 1, "vault_throttle_refill_per_second": 0.5})
    await vault.get_secret("vault-waits")
    secret = await vault.get_secret("vault-waits")
    assert secret.value == "value-1"
    assert emu.faults.count_of("vault.get", 429) >= 1
    assert [s for s, seconds in waits if seconds >= 1] == ["keyvault"]


async def test_injected_429s_carry_retry_after_in_each_services_words(
    emu: RunningEmulator, graph: Any, vault: Any
) -> None:
    app = emu.tenant.create_app("injected-429")
    # Both clients hold their tokens before the token endpoint starts refusing.
    await vault.set_secret("injected-429", "value-1")
    await graph.applications.by_application_id(app.id).get()
    emu.faults.update({
        "error_rates": {"graph.get": {"429": 1.0}, "vault.get": {"429": 1.0},
                        "token": {"429": 1.0}},
        "injected_retry_after_seconds": 600,  # past kiota's ceiling: no retry
    })
    with pytest.raises(ODataError) as graph_info:
        await graph.applications.by_application_id(app.id).get()
    assert graph_info.value.response_status_code == 429
    assert graph_info.value.error.code == "TooManyRequests"
    assert graph_info.value.response_headers["retry-after"] == "600"

    with pytest.raises(HttpResponseError) as vault_info:
        await vault.get_secret("injected-429", retry_total=0)
    assert vault_info.value.status_code == 429
    assert vault_info.value.error is not None and vault_info.value.error.code == "Throttled"
    assert vault_info.value.response.headers["Retry-After"] == "600"

    env = emu.env
    async with sdk_clients.async_secret_credential(
        env["AZURE_TENANT_ID"], env["AZURE_CLIENT_ID"], env["AZURE_CLIENT_SECRET"],
        authority_host=env["ROTATOR_AUTHORITY_HOST"], ca_bundle=env["ROTATOR_CA_BUNDLE"],
        retry_total=0,
    ) as fresh:
        with pytest.raises(ClientAuthenticationError) as token_info:
            await fresh.get_token("https://graph.microsoft.com/.default")
    response = token_info.value.response
    assert response is not None and response.status_code == 429
    assert response.headers["Retry-After"] == "600"
    assert "AADSTS90055" in str(token_info.value)
