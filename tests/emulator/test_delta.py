"""Delta queries on applications and service principals, as Graph answers them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from kiota_abstractions.base_request_configuration import RequestConfiguration
from msgraph.generated.applications.delta.delta_request_builder import DeltaRequestBuilder

from rotator.adapters import sdk_clients
from rotator.emulator.runner import RunningEmulator
from tests.emulator.helpers import rotator_credential, token_for

GRAPH = "https://graph.microsoft.com/.default"
SELECT = "appId,displayName,passwordCredentials,keyCredentials"


@pytest.fixture
def headers(emu: RunningEmulator, http: httpx.Client) -> dict[str, str]:
    env = emu.env
    token = token_for(http, emu, env["AZURE_CLIENT_ID"], env["AZURE_CLIENT_SECRET"],
                      GRAPH).json()["access_token"]
    return {"authorization": f"Bearer {token}"}


@pytest.fixture
def small_pages(emu: RunningEmulator) -> Iterator[None]:
    """Pages of 15, so the 40-odd seeded apps take several pages."""
    emu.tenant.delta_page_size = 15
    yield
    emu.tenant.delta_page_size = 200


def _round(http: httpx.Client, headers: dict[str, str], url: str
           ) -> tuple[list[dict[str, Any]], str, int]:
    """Every object of one round, its deltaLink, and how many pages it took."""
    found: list[dict[str, Any]] = []
    pages = 0
    while True:
        answer = http.get(url, headers=headers)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        pages += 1
        found += body["value"]
        assert ("@odata.nextLink" in body) != ("@odata.deltaLink" in body)
        if "@odata.deltaLink" in body:
            return found, body["@odata.deltaLink"], pages
        url = body["@odata.nextLink"]


def test_a_round_lists_everything_then_its_link_only_what_changed(
    emu: RunningEmulator, http: httpx.Client, headers: dict[str, str], small_pages: None
) -> None:
    tenant = emu.tenant
    kept = tenant.create_app("delta-kept", secrets=[("old", datetime.now(UTC) + timedelta(30))])
    doomed = tenant.create_app("delta-doomed")
    found, link, pages = _round(http, headers, f"/v1.0/applications/delta?$select={SELECT}")
    live = {a.id for a in tenant.apps_in_order()}
    assert {item["id"] for item in found} == live
    assert pages > 1
    assert all(set(item) == {"id", *SELECT.split(",")} for item in found)  # $select kept
    assert "$select" not in link  # carried by the token

    added = tenant.create_app("delta-added")
    tenant.add_password(kept.id, "new", datetime.now(UTC) + timedelta(days=90))
    tenant.delete_app(doomed.id)
    changes, link, _ = _round(http, headers, link)
    by_id = {item["id"]: item for item in changes}
    assert set(by_id) == {added.id, kept.id, doomed.id}
    assert by_id[doomed.id] == {"id": doomed.id, "@removed": {"reason": "changed"}}
    assert [p["displayName"] for p in by_id[kept.id]["passwordCredentials"]][-1] == "new"
    assert len(by_id[kept.id]["passwordCredentials"]) == 2
    assert set(by_id[added.id]) == {"id", *SELECT.split(",")}  # the round's $select

    nothing, _, pages = _round(http, headers, link)
    assert nothing == [] and pages == 1
    tenant.delete_app(kept.id)
    tenant.delete_app(added.id)


def test_latest_starts_tracking_from_now(
    emu: RunningEmulator, http: httpx.Client, headers: dict[str, str]
) -> None:
    answer = http.get("/v1.0/applications/delta?$deltatoken=latest&$select=appId",
                      headers=headers).json()
    assert answer["value"] == [] and "@odata.deltaLink" in answer
    app = emu.tenant.create_app("delta-latest")
    changes, _, _ = _round(http, headers, answer["@odata.deltaLink"])
    assert changes == [{"id": app.id, "appId": app.app_id}]
    emu.tenant.delete_app(app.id)


def test_service_principals_report_their_deletion(
    emu: RunningEmulator, http: httpx.Client, headers: dict[str, str]
) -> None:
    _, link, _ = _round(http, headers, "/v1.0/servicePrincipals/delta?$select=appId")
    app = emu.tenant.create_app("delta-sp")
    sp = emu.tenant.sp_by_app_id(app.app_id)
    assert sp is not None
    added, link, _ = _round(http, headers, link)
    assert {"id": sp.id, "appId": app.app_id} in added
    emu.tenant.delete_app(app.id)
    removed, _, _ = _round(http, headers, link)
    assert {"id": sp.id, "@removed": {"reason": "changed"}} in removed


def test_an_expired_or_reset_token_is_gone_and_a_forged_one_refused(
    emu: RunningEmulator, http: httpx.Client, headers: dict[str, str]
) -> None:
    tenant = emu.tenant
    _, link, _ = _round(http, headers, "/v1.0/applications/delta?$deltatoken=latest")
    tenant.delta_token_lifetime_seconds = 0.0
    try:
        expired = http.get(link, headers=headers)
    finally:
        tenant.delta_token_lifetime_seconds = 7 * 86400.0
    assert expired.status_code == 410
    assert expired.json()["error"]["code"] == "syncStateNotFound"
    assert http.get(link, headers=headers).status_code == 200
    tenant.reset_change_tracking()
    gone = http.get(link, headers=headers)
    assert (gone.status_code, gone.json()["error"]["code"]) == (410, "syncStateNotFound")
    forged = http.get("/v1.0/applications/delta?$deltatoken=bm90IGEgdG9rZW4", headers=headers)
    assert forged.status_code == 400
    sp_link = link.replace("/applications/", "/servicePrincipals/")
    assert http.get(sp_link, headers=headers).status_code in (400, 410)


@pytest.fixture
async def graph(emu: RunningEmulator) -> AsyncIterator[Any]:
    async with rotator_credential(emu) as cred:
        yield sdk_clients.make_graph_client(
            cred, graph_url=emu.env["ROTATOR_GRAPH_URL"], ca_bundle=emu.env["ROTATOR_CA_BUNDLE"])


async def test_the_sdk_follows_a_delta_round(emu: RunningEmulator, graph: Any,
                                             small_pages: None) -> None:
    params = DeltaRequestBuilder.DeltaRequestBuilderGetQueryParameters(
        select=["appId", "passwordCredentials"])
    page = await graph.applications.delta.get(RequestConfiguration(query_parameters=params))
    seen = [a.id for a in page.value]
    while page.odata_next_link:
        page = await graph.applications.delta.with_url(page.odata_next_link).get()
        seen += [a.id for a in page.value]
    assert page.odata_delta_link
    assert sorted(seen) == sorted(a.id for a in emu.tenant.apps_in_order())
