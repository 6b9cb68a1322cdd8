"""App management policies through the real msgraph-sdk, set up by the tenant administrator."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from msgraph.generated.applications.item.add_password.add_password_post_request_body import (
    AddPasswordPostRequestBody,
)
from msgraph.generated.models.app_credential_restriction_type import (
    AppCredentialRestrictionType,
)
from msgraph.generated.models.app_key_credential_restriction_type import (
    AppKeyCredentialRestrictionType,
)
from msgraph.generated.models.app_management_application_configuration import (
    AppManagementApplicationConfiguration,
)
from msgraph.generated.models.app_management_policy import AppManagementPolicy
from msgraph.generated.models.application import Application
from msgraph.generated.models.custom_app_management_configuration import (
    CustomAppManagementConfiguration,
)
from msgraph.generated.models.key_credential import KeyCredential
from msgraph.generated.models.key_credential_configuration import KeyCredentialConfiguration
from msgraph.generated.models.o_data_errors.o_data_error import ODataError
from msgraph.generated.models.password_credential import PasswordCredential
from msgraph.generated.models.password_credential_configuration import (
    PasswordCredentialConfiguration,
)
from msgraph.generated.models.reference_create import ReferenceCreate
from msgraph.generated.models.tenant_app_management_policy import TenantAppManagementPolicy

from rotator.adapters import sdk_clients
from rotator.emulator.runner import RunningEmulator
from tests.emulator.helpers import admin_credential, make_cert, rotator_credential


def _client(emu: RunningEmulator, cred: Any) -> Any:
    return sdk_clients.make_graph_client(
        cred, graph_url=emu.env["ROTATOR_GRAPH_URL"], ca_bundle=emu.env["ROTATOR_CA_BUNDLE"]
    )


@pytest.fixture
async def admin(emu: RunningEmulator) -> AsyncIterator[Any]:
    async with admin_credential(emu) as cred:
        yield _client(emu, cred)


@pytest.fixture
async def graph(emu: RunningEmulator) -> AsyncIterator[Any]:
    async with rotator_credential(emu) as cred:
        yield _client(emu, cred)


def _in(days: int) -> datetime:
    return datetime.now(UTC) + timedelta(days=days)


def _password(days: int | None) -> AddPasswordPostRequestBody:
    return AddPasswordPostRequestBody(
        password_credential=PasswordCredential(
            display_name="p", end_date_time=None if days is None else _in(days)
        )
    )


def _duration(days: int) -> Any:
    # kiota writes a timedelta as str(timedelta) ("30 days, 0:00:00"), which Graph
    # refuses; an ISO-8601 string goes out as it is.
    return f"P{days}D"


def _lifetime(days: int) -> PasswordCredentialConfiguration:
    return PasswordCredentialConfiguration(
        restriction_type=AppCredentialRestrictionType.PasswordLifetime,
        max_lifetime=_duration(days),
    )


async def _app_policy(admin: Any, *restrictions: PasswordCredentialConfiguration,
                      keys: list[KeyCredentialConfiguration] | None = None) -> str:
    created = await admin.policies.app_management_policies.post(
        AppManagementPolicy(
            display_name="credential policy",
            description="test",
            is_enabled=True,
            restrictions=CustomAppManagementConfiguration(
                password_credentials=list(restrictions), key_credentials=keys or []
            ),
        )
    )
    assert created.id
    return str(created.id)


async def _assign(emu: RunningEmulator, admin: Any, object_id: str, policy_id: str) -> None:
    ref = ReferenceCreate(
        odata_id=f"{emu.env['ROTATOR_GRAPH_URL']}/policies/appManagementPolicies/{policy_id}"
    )
    await admin.applications.by_application_id(object_id).app_management_policies.ref.post(ref)


@pytest.fixture
async def default_policy(admin: Any) -> AsyncIterator[None]:
    yield
    await admin.policies.default_app_management_policy.patch(
        TenantAppManagementPolicy(
            is_enabled=False,
            application_restrictions=AppManagementApplicationConfiguration(
                password_credentials=[], key_credentials=[]
            ),
        )
    )


async def test_tenant_default_limits_password_lifetime(
    emu: RunningEmulator, admin: Any, graph: Any, default_policy: None
) -> None:
    await admin.policies.default_app_management_policy.patch(
        TenantAppManagementPolicy(
            is_enabled=True,
            application_restrictions=AppManagementApplicationConfiguration(
                password_credentials=[_lifetime(30)]
            ),
        )
    )
    # The rotator's identity holds Policy.Read.All and reads what the admin set.
    read = await graph.policies.default_app_management_policy.get()
    assert read.is_enabled is True
    (restriction,) = read.application_restrictions.password_credentials
    assert restriction.max_lifetime == timedelta(days=30)
    app = emu.tenant.create_app("default-bound")
    for days in (31, None):
        with pytest.raises(ODataError) as info:
            await graph.applications.by_application_id(app.id).add_password.post(
                _password(days)
            )
        assert info.value.response_status_code == 400
        error = info.value.error
        assert error.code == "CredentialInvalidLifetimeAsPerAppPolicy"
        assert error.message == ("Credential lifetime exceeds the max value allowed as per "
                                 "assigned policy '00000000-0000-0000-0000-000000000000'")
        assert [(d.code, d.target) for d in error.details] == [("InvalidKeyEndDate", "EndDate")]
    assert emu.tenant.passwords(app.app_id) == []
    assert (await graph.applications.by_application_id(app.id).add_password.post(_password(30)))


async def test_app_policy_overrides_the_tenant_default(
    emu: RunningEmulator, admin: Any, graph: Any, default_policy: None
) -> None:
    emu.tenant.set_lifetime_policy(30)
    policy_id = await _app_policy(admin, _lifetime(180))
    app = emu.tenant.create_app("app-bound")
    await _assign(emu, admin, app.id, policy_id)
    listed = await graph.applications.by_application_id(app.id).app_management_policies.get()
    assert [p.id for p in listed.value] == [policy_id]
    assert await graph.applications.by_application_id(app.id).add_password.post(_password(90))
    with pytest.raises(ODataError) as info:
        await graph.applications.by_application_id(app.id).add_password.post(_password(200))
    assert policy_id in info.value.error.message
    # An app without its own policy still meets the tenant default.
    other = emu.tenant.create_app("default-only")
    with pytest.raises(ODataError):
        await graph.applications.by_application_id(other.id).add_password.post(_password(90))


async def test_blocked_password_addition(emu: RunningEmulator, admin: Any, graph: Any) -> None:
    policy_id = await _app_policy(
        admin,
        PasswordCredentialConfiguration(
            restriction_type=AppCredentialRestrictionType.PasswordAddition
        ),
    )
    app = emu.tenant.create_app("no-secrets")
    await _assign(emu, admin, app.id, policy_id)
    with pytest.raises(ODataError) as info:
        await graph.applications.by_application_id(app.id).add_password.post(_password(30))
    assert info.value.response_status_code == 400
    assert info.value.error.code == "CredentialTypeNotAllowedAsPerAppPolicy"
    assert policy_id in info.value.error.message
    assert emu.tenant.passwords(app.app_id) == []


async def test_asymmetric_key_lifetime(emu: RunningEmulator, admin: Any, graph: Any) -> None:
    policy_id = await _app_policy(
        admin,
        keys=[KeyCredentialConfiguration(
            restriction_type=AppKeyCredentialRestrictionType.AsymmetricKeyLifetime,
            max_lifetime=_duration(90),
        )],
    )
    app = emu.tenant.create_app("short-certs")
    await _assign(emu, admin, app.id, policy_id)
    long_cert = make_cert("long", days=365)
    body = Application(key_credentials=[KeyCredential(
        type="AsymmetricX509Cert", usage="Verify", key=long_cert.der)])
    with pytest.raises(ODataError) as info:
        await graph.applications.by_application_id(app.id).patch(body)
    assert info.value.error.code == "CredentialInvalidLifetimeAsPerAppPolicy"
    short = make_cert("short", days=60)
    await graph.applications.by_application_id(app.id).patch(Application(key_credentials=[
        KeyCredential(type="AsymmetricX509Cert", usage="Verify", key=short.der)]))
    assert [base64.b64encode(k.der or b"").decode() for k in emu.tenant.keys(app.app_id)] == [
        short.b64]


async def test_policies_need_permission(emu: RunningEmulator, graph: Any, admin: Any) -> None:
    # Reading needs Policy.Read.All; writing needs Policy.ReadWrite.ApplicationConfiguration.
    with pytest.raises(ODataError) as info:
        await graph.policies.default_app_management_policy.patch(
            TenantAppManagementPolicy(is_enabled=True))
    assert info.value.response_status_code == 403
    emu.tenant.revoke_app_role(emu.tenant.rotator_app_id, "00000003-0000-0000-c000-000000000000",
                               "Policy.Read.All")
    try:
        async with rotator_credential(emu) as cred:  # a fresh token, without the role
            with pytest.raises(ODataError) as info:
                await _client(emu, cred).policies.default_app_management_policy.get()
        assert info.value.response_status_code == 403
        assert info.value.error.code == "Authorization_RequestDenied"
    finally:
        emu.tenant.grant_app_role(emu.tenant.rotator_app_id,
                                  "00000003-0000-0000-c000-000000000000", "Policy.Read.All")


async def test_personal_account_apps_hold_at_most_two_secrets(
    emu: RunningEmulator, graph: Any
) -> None:
    app = emu.tenant.create_app("personal", sign_in_audience="AzureADandPersonalMicrosoftAccount")
    for _ in range(2):
        assert await graph.applications.by_application_id(app.id).add_password.post(_password(30))
    with pytest.raises(ODataError) as info:
        await graph.applications.by_application_id(app.id).add_password.post(_password(30))
    assert info.value.response_status_code == 400
    assert info.value.error.code == "TooManyPasswordCredentials"
    assert "AzureADandPersonalMicrosoftAccount" in info.value.error.message
    assert len(emu.tenant.passwords(app.app_id)) == 2
    # Organisation-only apps are not limited.
    org = emu.tenant.create_app("org-only")
    for _ in range(3):
        assert await graph.applications.by_application_id(org.id).add_password.post(_password(30))


def test_the_seed_has_apps_open_to_personal_accounts(emu: RunningEmulator) -> None:
    audiences = {emu.tenant.app_by_display_name(name).sign_in_audience
                 for name in ("personal-full-expired", "personal-full-valid", "personal-msa-only")}
    assert audiences == {"AzureADandPersonalMicrosoftAccount", "PersonalMicrosoftAccount"}
    assert len(emu.tenant.passwords(
        emu.tenant.app_by_display_name("personal-full-valid").app_id)) == 2
