"""The estate beside app registrations, through the real msgraph-sdk and azure-identity:
service principals' own credentials and SAML signing certificates, owners, federated
credentials, JSON batching."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from kiota_abstractions.base_request_configuration import RequestConfiguration
from msgraph.generated.models.key_credential import KeyCredential
from msgraph.generated.models.o_data_errors.o_data_error import ODataError
from msgraph.generated.models.password_credential import PasswordCredential
from msgraph.generated.service_principals.item.add_key.add_key_post_request_body import (
    AddKeyPostRequestBody,
)
from msgraph.generated.service_principals.item.add_password.add_password_post_request_body import (
    AddPasswordPostRequestBody,
)
from msgraph.generated.service_principals.item.remove_password.remove_password_post_request_body import (  # noqa: E501
    RemovePasswordPostRequestBody,
)
from msgraph.generated.service_principals.service_principals_request_builder import (
    ServicePrincipalsRequestBuilder,
)

from rotator.adapters import sdk_clients
from rotator.emulator.runner import RunningEmulator
from rotator.emulator.seed_estate import sp_secret_name
from tests.emulator.helpers import (
    admin_credential,
    claims_of,
    make_cert,
    make_proof,
    rotator_credential,
    token_for,
)

GRAPH = "https://graph.microsoft.com/.default"


def _in(days: float) -> datetime:
    return datetime.now(UTC) + timedelta(days=days)


@pytest.fixture
async def graph(emu: RunningEmulator) -> AsyncIterator[Any]:
    async with rotator_credential(emu) as cred:
        yield sdk_clients.make_graph_client(
            cred, graph_url=emu.env["ROTATOR_GRAPH_URL"], ca_bundle=emu.env["ROTATOR_CA_BUNDLE"])


@pytest.fixture
async def admin_graph(emu: RunningEmulator) -> AsyncIterator[Any]:
    async with admin_credential(emu) as cred:
        yield sdk_clients.make_graph_client(
            cred, graph_url=emu.env["ROTATOR_GRAPH_URL"], ca_bundle=emu.env["ROTATOR_CA_BUNDLE"])


def _bearer(http: httpx.Client, emu: RunningEmulator, *, admin: bool = False) -> dict[str, str]:
    env = emu.env
    client = env["EMULATOR_ADMIN_CLIENT_ID" if admin else "AZURE_CLIENT_ID"]
    secret = env["EMULATOR_ADMIN_CLIENT_SECRET" if admin else "AZURE_CLIENT_SECRET"]
    token = token_for(http, emu, client, secret, GRAPH).json()["access_token"]
    return {"authorization": f"Bearer {token}"}


async def _all_sps(graph: Any, top: int = 7) -> list[Any]:
    config = RequestConfiguration(
        query_parameters=ServicePrincipalsRequestBuilder
        .ServicePrincipalsRequestBuilderGetQueryParameters(
            top=top, select=["id", "appId", "displayName", "appOwnerOrganizationId",
                             "preferredSingleSignOnMode", "preferredTokenSigningKeyThumbprint",
                             "passwordCredentials", "keyCredentials"]))
    page = await graph.service_principals.get(request_configuration=config)
    found = list(page.value)
    while page.odata_next_link:
        page = await graph.service_principals.with_url(page.odata_next_link).get()
        found += page.value
    return found


async def test_service_principals_page_with_their_own_credentials(
    emu: RunningEmulator, graph: Any
) -> None:
    sps = {sp.display_name: sp for sp in await _all_sps(graph)}
    assert len(sps) >= emu.tenant.app_count()  # every app's, the first-party ones and more
    wiki = sps["saml-wiki"]
    assert wiki.preferred_single_sign_on_mode == "saml"
    pairs: dict[str, set[str]] = {}
    for key in wiki.key_credentials:
        pairs.setdefault(key.custom_key_identifier.hex().upper()
                         if isinstance(key.custom_key_identifier, bytes)
                         else str(key.custom_key_identifier), set()).add(key.usage)
    assert list(pairs.values()) == [{"Sign", "Verify"}, {"Sign", "Verify"}]
    assert wiki.preferred_token_signing_key_thumbprint
    partner = sps["partner-sync"]
    assert partner.app_owner_organization_id != emu.tenant.tenant_id
    assert len(partner.password_credentials) == 1
    assert partner.password_credentials[0].secret_text is None  # never listed
    assert emu.tenant.app_by_app_id(partner.app_id) is None  # registered elsewhere


async def test_a_service_principal_secret_signs_in_for_the_app_id(
    emu: RunningEmulator, admin_graph: Any, http: httpx.Client
) -> None:
    app = emu.tenant.app_by_display_name("billing-legacy")
    sp = emu.tenant.sp_by_app_id(app.app_id)
    assert sp is not None
    builder = admin_graph.service_principals.by_service_principal_id(sp.id)
    created = await builder.add_password.post(AddPasswordPostRequestBody(
        password_credential=PasswordCredential(display_name="persistence", end_date_time=_in(30))))
    assert created.secret_text and created.key_id
    # Invisible on the app registration, valid for its client id.
    assert created.key_id not in {p.key_id for p in emu.tenant.passwords(app.app_id)}
    ok = token_for(http, emu, app.app_id, created.secret_text, GRAPH)
    assert ok.status_code == 200, ok.text
    assert claims_of(ok.json()["access_token"])["appid"] == app.app_id
    await builder.remove_password.post(RemovePasswordPostRequestBody(key_id=created.key_id))
    refused = token_for(http, emu, app.app_id, created.secret_text, GRAPH)
    assert refused.status_code == 401 and "AADSTS7000215" in refused.text


def test_a_multi_tenant_apps_local_secret_signs_in(emu: RunningEmulator, http: httpx.Client
                                                   ) -> None:
    sp = next(s for s in emu.tenant._sps.values() if s.display_name == "partner-sync")
    secret = emu.tenant.secret_of(sp_secret_name("partner-sync"))
    ok = token_for(http, emu, sp.app_id, secret, GRAPH)
    assert ok.status_code == 200, ok.text
    wrong = token_for(http, emu, sp.app_id, secret[:-1] + "x", GRAPH)
    assert wrong.status_code == 401


async def test_add_key_on_a_service_principal_needs_proof_from_its_own_certificate(
    emu: RunningEmulator, admin_graph: Any
) -> None:
    app = emu.tenant.create_app("sp-key-holder", owned_by_rotator=False)
    sp = emu.tenant.sp_by_app_id(app.app_id)
    assert sp is not None
    first, second = make_cert("sp-first"), make_cert("sp-second")
    emu.tenant.sp_add_key(sp.id, emu.tenant.make_key_credential(first.der, "first"))
    builder = admin_graph.service_principals.by_service_principal_id(sp.id)
    added = await builder.add_key.post(AddKeyPostRequestBody(
        key_credential=KeyCredential(type="AsymmetricX509Cert", usage="Verify", key=second.der),
        proof=make_proof(first, sp.id)))
    assert added.key_id and len(emu.tenant.find_sp(sp.id).key_credentials) == 2
    # Any unusable proof is refused as Graph refuses it: 401, without saying why.
    with pytest.raises(ODataError, match="Access Token missing or malformed") as refused:
        await builder.add_key.post(AddKeyPostRequestBody(
            key_credential=KeyCredential(type="AsymmetricX509Cert", usage="Verify",
                                         key=make_cert("x").der),
            proof=make_proof(first, app.id)))  # the app's id is not the service principal's
    assert refused.value.response_status_code == 401


def test_owners_of_apps_and_service_principals(emu: RunningEmulator, http: httpx.Client) -> None:
    headers = _bearer(http, emu)
    client = emu.tenant.app_by_display_name("myclient")
    owners = http.get(f"/v1.0/applications/{client.id}/owners", headers=headers).json()["value"]
    users = [o for o in owners if o["@odata.type"] == "#microsoft.graph.user"]
    assert [u["mail"] for u in users] == [f"alice@{emu.tenant.domain}"]
    saml = next(s for s in emu.tenant._sps.values() if s.display_name == "saml-travel")
    none = http.get(f"/v1.0/servicePrincipals/{saml.id}/owners", headers=headers).json()
    assert none["value"] == []


def test_expand_owners_pages_by_at_most_100(emu: RunningEmulator, http: httpx.Client) -> None:
    headers = _bearer(http, emu)
    url = "/v1.0/applications?$top=999&$select=id,appId&$expand=owners($select=id,mail," \
          "userPrincipalName)"
    body = http.get(url, headers=headers).json()
    assert 0 < len(body["value"]) <= 100
    assert all("owners" in app for app in body["value"])
    assert any(o.get("mail") for app in body["value"] for o in app["owners"])
    sps = http.get("/v1.0/servicePrincipals?$expand=owners", headers=headers).json()
    assert all("owners" in sp for sp in sps["value"])
    bad = http.get("/v1.0/applications?$expand=memberOf", headers=headers)
    assert bad.status_code == 400


def test_owners_without_a_user_read_permission_are_bare(emu: RunningEmulator,
                                                        http: httpx.Client) -> None:
    client = emu.tenant.app_by_display_name("myclient")
    # The walkthrough client may read applications but not users.
    secret = emu.tenant.secret_of("myclient")
    emu.tenant.grant_app_role(client.app_id, "00000003-0000-0000-c000-000000000000",
                              "Application.Read.All")
    try:
        token = token_for(http, emu, client.app_id, secret, GRAPH).json()["access_token"]
        owners = http.get(f"/v1.0/applications/{client.id}/owners",
                          headers={"authorization": f"Bearer {token}"}).json()["value"]
        assert owners and all("mail" not in o for o in owners)
    finally:
        emu.tenant.revoke_app_role(client.app_id, "00000003-0000-0000-c000-000000000000",
                                   "Application.Read.All")


def test_json_batching(emu: RunningEmulator, http: httpx.Client) -> None:
    headers = _bearer(http, emu)
    apps = emu.tenant.apps_in_order()[:3]
    requests = [{"id": str(n), "method": "GET", "url": f"/applications/{a.id}/owners"}
                for n, a in enumerate(apps)]
    requests.append({"id": "missing", "method": "GET",
                     "url": f"/applications/{uuid.uuid4()}/owners"})
    answer = http.post("/v1.0/$batch", json={"requests": requests}, headers=headers)
    assert answer.status_code == 200
    by_id = {r["id"]: r for r in answer.json()["responses"]}
    assert {by_id[str(n)]["status"] for n in range(3)} == {200}
    assert by_id["missing"]["status"] == 404
    assert by_id["missing"]["body"]["error"]["code"] == "Request_ResourceNotFound"
    too_many = [{"id": str(n), "method": "GET", "url": "/applications?$top=1"}
                for n in range(21)]
    refused = http.post("/v1.0/$batch", json={"requests": too_many}, headers=headers)
    assert refused.status_code == 400


def test_federated_credentials_and_users_through_the_admin(
    emu: RunningEmulator, http: httpx.Client
) -> None:
    headers = _bearer(http, emu, admin=True)
    gh = emu.tenant.app_by_display_name("gh-deploy")
    listed = http.get(f"/v1.0/applications/{gh.id}/federatedIdentityCredentials",
                      headers=headers).json()["value"]
    assert [f["issuer"] for f in listed] == ["https://token.actions.githubusercontent.com"]
    app = emu.tenant.create_app("fic-made-by-admin", owned_by_rotator=False)
    made = http.post(f"/v1.0/applications/{app.id}/federatedIdentityCredentials", json={
        "name": "main", "issuer": "https://issuer.example", "subject": "system:sa:x",
        "audiences": ["api://AzureADTokenExchange"]}, headers=headers)
    assert made.status_code == 201, made.text
    user = http.post("/v1.0/users", json={"displayName": "Frank",
                                          "userPrincipalName": f"frank@{emu.tenant.domain}",
                                          "mail": f"frank@{emu.tenant.domain}"}, headers=headers)
    assert user.status_code == 201, user.text
    added = http.post(f"/v1.0/applications/{app.id}/owners/$ref", headers=headers,
                      json={"@odata.id": f"{emu.base_url}/v1.0/directoryObjects/"
                                         f"{user.json()['id']}"})
    assert added.status_code == 204, added.text
    sp = emu.tenant.sp_by_app_id(app.app_id)
    assert sp is not None
    signing = http.post(f"/v1.0/servicePrincipals/{sp.id}/addTokenSigningCertificate",
                        json={"displayName": "CN=made"}, headers=headers)
    assert signing.status_code == 200, signing.text
    usages = sorted(k.usage for k in emu.tenant.find_sp(sp.id).key_credentials)
    assert usages == ["Sign", "Verify"]


def test_apps_with_federated_credentials_are_an_advanced_query(
    emu: RunningEmulator, http: httpx.Client
) -> None:
    headers = _bearer(http, emu)
    url = ("/v1.0/applications?$filter=federatedIdentityCredentials/$count ne 0"
           "&$select=appId&$top=2")
    refused = http.get(url, headers=headers)  # Graph answers it only as an advanced query
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "Request_UnsupportedQuery"
    advanced = {**headers, "ConsistencyLevel": "eventual"}
    pages, link = [], url + "&$count=true"
    while link:
        body = http.get(link, headers=advanced).json()
        pages.append(body)
        link = body.get("@odata.nextLink")
    names = {emu.tenant.find_app(app_id=a["appId"]).display_name
             for p in pages for a in p["value"]}
    assert names >= {"gh-deploy", "aks-workload"} and "billing-legacy" not in names
    assert pages[0]["@odata.count"] == len(names) and len(pages) == -(-len(names) // 2)
