"""Graph through the real msgraph-sdk (and raw HTTP where the SDK hides the detail)."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from kiota_abstractions.base_request_configuration import RequestConfiguration
from msgraph.generated.applications.applications_request_builder import ApplicationsRequestBuilder
from msgraph.generated.applications.item.add_key.add_key_post_request_body import (
    AddKeyPostRequestBody,
)
from msgraph.generated.applications.item.add_password.add_password_post_request_body import (
    AddPasswordPostRequestBody,
)
from msgraph.generated.applications.item.remove_key.remove_key_post_request_body import (
    RemoveKeyPostRequestBody,
)
from msgraph.generated.applications.item.remove_password.remove_password_post_request_body import (
    RemovePasswordPostRequestBody,
)
from msgraph.generated.models.app_role_assignment import AppRoleAssignment
from msgraph.generated.models.application import Application
from msgraph.generated.models.key_credential import KeyCredential
from msgraph.generated.models.o_data_errors.o_data_error import ODataError
from msgraph.generated.models.password_credential import PasswordCredential
from msgraph.generated.models.service_principal import ServicePrincipal

from rotator.adapters import sdk_clients
from rotator.emulator.runner import RunningEmulator
from tests.emulator.helpers import (
    claims_of,
    make_cert,
    make_proof,
    padded,
    rotator_credential,
    token_for,
)

GRAPH = "https://graph.microsoft.com/.default"


@pytest.fixture
async def graph(emu: RunningEmulator) -> AsyncIterator[Any]:
    async with rotator_credential(emu) as cred:
        yield sdk_clients.make_graph_client(
            cred, graph_url=emu.env["ROTATOR_GRAPH_URL"], ca_bundle=emu.env["ROTATOR_CA_BUNDLE"]
        )


async def test_reads_lag_writes_until_every_replica_learns_them(
    emu: RunningEmulator, graph: Any
) -> None:
    emu.tenant.graph_consistency_seconds = 3600  # no read replica learns within the test
    app = emu.tenant.create_app("lagging-reads")
    body = AddPasswordPostRequestBody(password_credential=PasswordCredential(end_date_time=_in(30)))
    created = await graph.applications.by_application_id(app.id).add_password.post(body)
    assert len(emu.tenant.passwords(app.app_id)) == 1  # the write landed
    for _ in range(5):
        read = await graph.applications.by_application_id(app.id).get()
        assert read.password_credentials == []  # but no replica serves it yet
    emu.tenant.graph_consistency_seconds = 0.3
    await graph.applications.by_application_id(app.id).add_password.post(body)
    await asyncio.sleep(0.5)
    read = await graph.applications.by_application_id(app.id).get()
    assert created.key_id in [p.key_id for p in read.password_credentials]
    assert len(read.password_credentials) == 2


async def test_read_lag_covers_application_reads_only(
    emu: RunningEmulator, graph: Any, http: httpx.Client
) -> None:
    """Tokens, owners and policies answer from the current state however far behind the
    application read replicas are (as documented: the lag is the directory's reads)."""
    emu.tenant.graph_consistency_seconds = 3600  # no read replica learns within the test
    app = emu.tenant.create_app("lag-scope")
    item = graph.applications.by_application_id(app.id)
    body = AddPasswordPostRequestBody(password_credential=PasswordCredential(end_date_time=_in(30)))
    created = await item.add_password.post(body)
    assert (await item.get()).password_credentials == []  # the application read lags ...
    # ... the token endpoint does not (propagation is its own, 0 in this suite) ...
    response = token_for(http, emu, app.app_id, created.secret_text,
                         "https://graph.microsoft.com/.default")
    assert response.status_code == 200, response.text
    # ... nor do the app's owners and policies.
    owners = await item.owners.get()
    assert [o.id for o in owners.value] == [emu.tenant.sp_by_app_id(emu.tenant.rotator_app_id).id]
    assert (await item.app_management_policies.get()).value == []


def _in(days: int) -> datetime:
    return datetime.now(UTC) + timedelta(days=days)


async def test_list_pages_through_every_app(emu: RunningEmulator, graph: Any) -> None:
    config = RequestConfiguration(
        query_parameters=ApplicationsRequestBuilder.ApplicationsRequestBuilderGetQueryParameters(
            top=7, select=["id", "appId", "displayName", "passwordCredentials", "keyCredentials"]
        )
    )
    page = await graph.applications.get(request_configuration=config)
    apps = list(page.value)
    pages = 1
    while page.odata_next_link:
        page = await graph.applications.with_url(page.odata_next_link).get()
        apps.extend(page.value)
        pages += 1
    seen: list[str] = [a.app_id for a in apps]
    assert pages > 3
    live, _ = emu.tenant.page(0, 10**9)
    assert len(seen) == len(set(seen)) == len(live)
    # Other tests of the session add apps (some without secrets) at the end.
    seeded = next(a for a in apps if a.password_credentials)
    assert seeded.password_credentials[0].secret_text is None
    assert seeded.password_credentials[0].hint


async def test_get_by_object_id_and_app_id(emu: RunningEmulator, graph: Any) -> None:
    app = emu.tenant.app_by_display_name("mywebapi")
    by_id = await graph.applications.by_application_id(app.id).get()
    assert by_id.app_id == app.app_id
    assert [r.value for r in by_id.app_roles] == ["Admin", "ReadOnly"]
    by_app_id = await graph.applications_with_app_id(app.app_id).get()
    assert by_app_id.id == app.id
    with pytest.raises(ODataError) as info:
        await graph.applications.by_application_id("00000000-0000-4000-8000-000000000000").get()
    assert info.value.response_status_code == 404
    assert info.value.error.code == "Request_ResourceNotFound"


async def test_add_and_remove_password(
    emu: RunningEmulator, graph: Any, http: httpx.Client
) -> None:
    app = emu.tenant.create_app("rotate-me")
    body = AddPasswordPostRequestBody(
        password_credential=PasswordCredential(display_name="rotation-1", end_date_time=_in(90))
    )
    created = await graph.applications.by_application_id(app.id).add_password.post(body)
    assert created.secret_text and created.hint == created.secret_text[:3]
    assert created.display_name == "rotation-1"
    ok = token_for(http, emu, app.app_id, created.secret_text, GRAPH)
    assert ok.status_code == 200
    await graph.applications.by_application_id(app.id).remove_password.post(
        RemovePasswordPostRequestBody(key_id=created.key_id)
    )
    assert emu.tenant.passwords(app.app_id) == []
    with pytest.raises(ODataError) as info:
        await graph.applications.by_application_id(app.id).remove_password.post(
            RemovePasswordPostRequestBody(key_id=created.key_id)
        )
    assert info.value.response_status_code == 404


async def test_lifetime_policy(emu: RunningEmulator, graph: Any) -> None:
    app = emu.tenant.create_app("policy-bound")
    emu.tenant.set_lifetime_policy(180)
    for end in (_in(365), None):
        body = AddPasswordPostRequestBody(
            password_credential=PasswordCredential(display_name="too long", end_date_time=end)
        )
        with pytest.raises(ODataError) as info:
            await graph.applications.by_application_id(app.id).add_password.post(body)
        assert info.value.response_status_code == 400
        assert info.value.error.code == "CredentialInvalidLifetimeAsPerAppPolicy"
        error = info.value.error
        assert error.message == (
            "Credential lifetime exceeds the max value allowed as per assigned policy "
            f"'{emu.tenant.default_policy.id}'"
        )
        assert [(d.code, d.target) for d in error.details] == [("InvalidKeyEndDate", "EndDate")]
    fine = AddPasswordPostRequestBody(password_credential=PasswordCredential(end_date_time=_in(90)))
    assert (await graph.applications.by_application_id(app.id).add_password.post(fine)).key_id


async def test_write_to_unowned_app_is_denied(emu: RunningEmulator, graph: Any) -> None:
    foreign = emu.tenant.create_app("not-mine", owned_by_rotator=False)
    # Reading is allowed (as in real tenants with OwnedBy); writing is not.
    assert (await graph.applications.by_application_id(foreign.id).get()).display_name == "not-mine"
    body = AddPasswordPostRequestBody(password_credential=PasswordCredential(end_date_time=_in(30)))
    with pytest.raises(ODataError) as info:
        await graph.applications.by_application_id(foreign.id).add_password.post(body)
    assert info.value.response_status_code == 403
    assert info.value.error.code == "Authorization_RequestDenied"
    assert info.value.error.message == "Insufficient privileges to complete the operation."


@pytest.mark.usefixtures("consistent_reads")  # it reads each write back at once
async def test_patch_then_add_key_with_proof_then_remove(emu: RunningEmulator, graph: Any) -> None:
    app = emu.tenant.create_app("cert-rotation")
    first, second = make_cert("first"), make_cert("second")
    item = graph.applications.by_application_id(app.id)

    # addKey needs an existing valid certificate to sign the proof with.
    with pytest.raises(ODataError) as info:
        await item.add_key.post(
            AddKeyPostRequestBody(
                key_credential=KeyCredential(
                    type="AsymmetricX509Cert", usage="Verify", key=first.der
                ),
                proof=make_proof(first, app.id),
            )
        )
    assert info.value.response_status_code == 400

    await item.patch(
        Application(
            key_credentials=[
                KeyCredential(
                    type="AsymmetricX509Cert", usage="Verify", key=first.der, display_name="first"
                )
            ]
        )
    )
    [registered] = emu.tenant.keys(app.app_id)
    assert registered.display_name == "first"

    added = await item.add_key.post(
        AddKeyPostRequestBody(
            key_credential=KeyCredential(
                type="AsymmetricX509Cert", usage="Verify", key=second.der, display_name="second"
            ),
            proof=make_proof(first, app.id),
        )
    )
    assert added.key_id and added.display_name == "second"
    assert len(emu.tenant.keys(app.app_id)) == 2

    # Graph answers every unusable proof alike: 401 Authentication_MissingOrMalformed.
    for bad in (
        make_proof(make_cert("stranger"), app.id),
        make_proof(first, app.id, lifetime=3600),
        make_proof(first, "someone-else"),
        make_proof(first, app.id, aud="https://graph.microsoft.com"),
        padded(make_proof(first, app.id)),
        "",
    ):
        with pytest.raises(ODataError) as info:
            await item.remove_key.post(
                RemoveKeyPostRequestBody(key_id=registered.key_id, proof=bad)
            )
        assert info.value.response_status_code == 401
        assert info.value.error.code == "Authentication_MissingOrMalformed"

    # A keyCredential without its type or usage is refused before anything is added.
    for missing in ("type", "usage"):
        spec = {"type": "AsymmetricX509Cert", "usage": "Verify", "key": make_cert("x").der}
        del spec[missing]
        with pytest.raises(ODataError) as info:
            await item.add_key.post(
                AddKeyPostRequestBody(
                    key_credential=KeyCredential(**spec), proof=make_proof(first, app.id)
                )
            )
        assert info.value.response_status_code == 400
        assert missing in (info.value.error.message or "")
    assert len(emu.tenant.keys(app.app_id)) == 2
    await item.remove_key.post(
        RemoveKeyPostRequestBody(key_id=registered.key_id, proof=make_proof(second, app.id))
    )
    assert [k.key_id for k in emu.tenant.keys(app.app_id)] == [str(added.key_id)]

    # Single-object $select=keyCredentials returns the raw key; lists never do.
    raw = await item.get(
        request_configuration=RequestConfiguration(
            query_parameters=ApplicationsRequestBuilder.ApplicationsRequestBuilderGetQueryParameters(
                select=["keyCredentials"]
            )
        )
    )
    assert raw.key_credentials[0].key == second.der


async def test_patch_replaces_the_whole_list(emu: RunningEmulator, graph: Any) -> None:
    cert_a, cert_b = make_cert("a"), make_cert("b")
    app = emu.tenant.create_app("patch-list")
    emu.tenant.add_certificate(app.id, cert_a.der)
    await graph.applications.by_application_id(app.id).patch(
        Application(
            key_credentials=[
                KeyCredential(type="AsymmetricX509Cert", usage="Verify", key=cert_b.der)
            ]
        )
    )
    keys = emu.tenant.keys(app.app_id)
    assert len(keys) == 1 and keys[0].der == cert_b.der


async def test_create_app_service_principal_and_consent(emu: RunningEmulator, graph: Any) -> None:
    created = await graph.applications.post(Application(display_name="brand-new"))
    assert created.app_id and created.id
    app = emu.tenant.find_app(app_id=created.app_id)
    rotator_sp = emu.tenant.sp_by_app_id(emu.env["AZURE_CLIENT_ID"])
    assert rotator_sp is not None and rotator_sp.id in app.owners
    sp = await graph.service_principals.post(ServicePrincipal(app_id=created.app_id))
    assert sp.app_id == created.app_id

    # Admin consent needs AppRoleAssignment.ReadWrite.All: the rotator lacks it...
    web_api_sp = emu.tenant.sp_by_app_id(emu.tenant.app_by_display_name("mywebapi").app_id)
    assert web_api_sp is not None
    read_only = next(r for r in emu.tenant.app_roles_of(web_api_sp) if r.value == "ReadOnly")
    assignment = AppRoleAssignment(
        principal_id=sp.id, resource_id=web_api_sp.id, app_role_id=read_only.id
    )
    with pytest.raises(ODataError) as info:
        await graph.service_principals.by_service_principal_id(
            web_api_sp.id
        ).app_role_assigned_to.post(assignment)
    assert info.value.response_status_code == 403

    # ...an admin identity has it.
    admin = emu.tenant.create_app(
        "tenant-admin", owned_by_rotator=False, secrets=[("admin-secret-value-0001", _in(1))]
    )
    emu.tenant.grant_app_role(
        admin.app_id, "00000003-0000-0000-c000-000000000000", "AppRoleAssignment.ReadWrite.All"
    )
    emu.tenant.grant_app_role(
        admin.app_id, "00000003-0000-0000-c000-000000000000", "Application.ReadWrite.All"
    )
    async with sdk_clients.async_secret_credential(
        emu.tenant.tenant_id,
        admin.app_id,
        "admin-secret-value-0001",
        authority_host=emu.base_url,
        ca_bundle=str(emu.ca_file),
    ) as admin_cred:
        admin_graph = sdk_clients.make_graph_client(
            admin_cred, graph_url=emu.env["ROTATOR_GRAPH_URL"], ca_bundle=str(emu.ca_file)
        )
        granted = await admin_graph.service_principals.by_service_principal_id(
            web_api_sp.id
        ).app_role_assigned_to.post(assignment)
        assert str(granted.app_role_id) == read_only.id
        secret = await admin_graph.applications.by_application_id(created.id).add_password.post(
            AddPasswordPostRequestBody(password_credential=PasswordCredential(end_date_time=_in(5)))
        )
    ssl_http = httpx.Client(base_url=emu.base_url, verify=sdk_clients.ssl_context(str(emu.ca_file)))
    with ssl_http:
        response = token_for(
            ssl_http, emu, created.app_id, secret.secret_text, "api://myapis/mywebapi/.default"
        )
    assert claims_of(response.json()["access_token"])["roles"] == ["ReadOnly"]

    await graph.applications.by_application_id(created.id).delete()
    with pytest.raises(KeyError):
        emu.tenant.app_by_display_name("brand-new")


async def test_throttling_surfaces_429_with_retry_after(emu: RunningEmulator, graph: Any) -> None:
    app = emu.tenant.create_app("throttled")
    # A refill this slow gives a Retry-After beyond the SDK's retry ceiling, so it gives up.
    emu.faults.update({"throttle_app_capacity": 2, "throttle_app_refill_per_second": 0.001})
    body = AddPasswordPostRequestBody(password_credential=PasswordCredential(end_date_time=_in(30)))
    item = graph.applications.by_application_id(app.id)
    await item.add_password.post(body)
    await item.add_password.post(body)
    with pytest.raises(ODataError) as info:
        await item.add_password.post(body)
    error = info.value
    assert error.response_status_code == 429
    assert error.error.code == "TooManyRequests"
    assert int(error.response_headers["retry-after"]) >= 1
    assert emu.faults.count_of("graph.addPassword", 429) >= 1


async def test_concurrent_writes_to_one_app_conflict(emu: RunningEmulator, graph: Any) -> None:
    app = emu.tenant.create_app("contended")
    emu.faults.update({"write_hold_ms": 300})
    body = AddPasswordPostRequestBody(password_credential=PasswordCredential(end_date_time=_in(30)))
    item = graph.applications.by_application_id(app.id)
    results = await asyncio.gather(
        item.add_password.post(body), item.add_password.post(body), return_exceptions=True
    )
    errors = [r for r in results if isinstance(r, ODataError)]
    assert len(errors) == 1
    assert errors[0].response_status_code == 409
    assert errors[0].error.code == "Directory_ConcurrencyViolation"


async def test_injected_errors_and_request_ids(emu: RunningEmulator, http: httpx.Client) -> None:
    token = token_for(
        http, emu, emu.env["AZURE_CLIENT_ID"], emu.env["AZURE_CLIENT_SECRET"], GRAPH
    ).json()["access_token"]
    emu.faults.update({"error_rates": {"graph.list": {"503": 1.0}}})
    response = http.get(
        "/v1.0/applications",
        headers={"Authorization": f"Bearer {token}", "client-request-id": "abc-123"},
    )
    assert response.status_code == 503
    assert response.headers["client-request-id"] == "abc-123"
    error = response.json()["error"]
    assert error["innerError"]["client-request-id"] == "abc-123"
    assert {"date", "request-id"} <= set(error["innerError"])
    stats = http.get("/_emulator/stats").json()["requests"]
    assert stats["graph.list"]["503"] >= 1


async def test_retry_option_and_bad_token(emu: RunningEmulator, http: httpx.Client) -> None:
    no_token = http.get("/v1.0/applications")
    assert no_token.status_code == 401
    assert no_token.json()["error"]["code"] == "InvalidAuthenticationToken"
    vault_token = token_for(
        http,
        emu,
        emu.env["AZURE_CLIENT_ID"],
        emu.env["AZURE_CLIENT_SECRET"],
        "https://vault.azure.net/.default",
    ).json()["access_token"]
    wrong_aud = http.get("/v1.0/applications", headers={"Authorization": f"Bearer {vault_token}"})
    assert wrong_aud.status_code == 401


def test_custom_key_identifier_is_hex_thumbprint(emu: RunningEmulator, http: httpx.Client) -> None:
    cert = make_cert("thumb")
    app = emu.tenant.create_app("thumbprint")
    emu.tenant.add_certificate(app.id, cert.der)
    token = token_for(
        http, emu, emu.env["AZURE_CLIENT_ID"], emu.env["AZURE_CLIENT_SECRET"], GRAPH
    ).json()["access_token"]
    body = http.get(
        f"/v1.0/applications/{app.id}", headers={"Authorization": f"Bearer {token}"}
    ).json()
    import hashlib

    expected = hashlib.sha1(cert.der).hexdigest().upper()
    assert body["keyCredentials"][0]["customKeyIdentifier"] == expected
    assert body["keyCredentials"][0]["key"] is None
    assert base64.b64decode(cert.b64) == cert.der
