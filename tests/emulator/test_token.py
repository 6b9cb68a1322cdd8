"""The token endpoint via real azure-identity (sync = MSAL, async = its own client) and raw HTTP."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest
from azure.core.exceptions import ClientAuthenticationError
from azure.identity import CertificateCredential as SyncCertificateCredential
from azure.identity.aio import CertificateCredential

from rotator.adapters import sdk_clients
from rotator.emulator.runner import RunningEmulator, start_emulator
from tests.emulator.helpers import claims_of, make_cert, token_for

GRAPH = "https://graph.microsoft.com/.default"
VAULT = "https://vault.azure.net/.default"
WEB_API = "api://myapis/mywebapi/.default"
V2_API = "api://myapis/myv2api/.default"
V1_ONLY = {"appid", "appidacr"}
V2_ONLY = {"azp", "azpacr"}


def _sync_cred(emu: RunningEmulator, client_id: str, secret: str):  # type: ignore[no-untyped-def]
    return sdk_clients.sync_secret_credential(
        emu.tenant.tenant_id,
        client_id,
        secret,
        authority_host=emu.base_url,
        ca_bundle=str(emu.ca_file),
    )


def test_sync_secret_credential_gets_graph_token(emu: RunningEmulator) -> None:
    token = _sync_cred(emu, emu.env["AZURE_CLIENT_ID"], emu.env["AZURE_CLIENT_SECRET"]).get_token(
        GRAPH
    )
    claims = claims_of(token.token)
    assert claims["aud"] == "https://graph.microsoft.com"
    assert claims["appid"] == emu.env["AZURE_CLIENT_ID"]
    assert claims["tid"] == emu.tenant.tenant_id
    assert claims["appidacr"] == "1"
    assert claims["roles"] == ["Application.ReadWrite.OwnedBy", "AuditLog.Read.All",
                              "Policy.Read.All", "User.Read.All"]
    rotator_sp = emu.tenant.sp_by_app_id(emu.env["AZURE_CLIENT_ID"])
    assert rotator_sp is not None and claims["oid"] == rotator_sp.id


async def test_async_secret_credential_gets_vault_token(emu: RunningEmulator) -> None:
    env = emu.env
    async with sdk_clients.async_secret_credential(
        env["AZURE_TENANT_ID"],
        env["AZURE_CLIENT_ID"],
        env["AZURE_CLIENT_SECRET"],
        authority_host=env["ROTATOR_AUTHORITY_HOST"],
        ca_bundle=env["ROTATOR_CA_BUNDLE"],
    ) as cred:
        token = await cred.get_token(VAULT)
    claims = claims_of(token.token)
    assert claims["aud"] == "https://vault.azure.net"
    assert "roles" not in claims


def test_walkthrough_roles(emu: RunningEmulator, http: httpx.Client) -> None:
    tenant = emu.tenant
    with_consent = tenant.app_by_display_name("myclient")
    without = tenant.app_by_display_name("myclient-noconsent")
    ok = token_for(http, emu, with_consent.app_id, tenant.secret_of("myclient"), WEB_API)
    assert ok.status_code == 200
    claims = claims_of(ok.json()["access_token"])
    assert claims["roles"] == ["ReadOnly"]
    assert claims["aud"] == "api://myapis/mywebapi"
    bare = token_for(http, emu, without.app_id, tenant.secret_of("myclient-noconsent"), WEB_API)
    assert bare.status_code == 200
    assert "roles" not in claims_of(bare.json()["access_token"])


def test_discovery_documents(emu: RunningEmulator, http: httpx.Client) -> None:
    tid = emu.tenant.tenant_id
    config = http.get(f"/{tid}/v2.0/.well-known/openid-configuration").json()
    assert config["token_endpoint"] == f"{emu.base_url}/{tid}/oauth2/v2.0/token"
    assert config["issuer"] == f"{emu.base_url}/{tid}/v2.0"
    keys = http.get(f"/{tid}/discovery/v2.0/keys").json()["keys"]
    assert keys and keys[0]["kty"] == "RSA"
    assert http.get("/not-a-tenant/v2.0/.well-known/openid-configuration").status_code == 400


def _aad(response: httpx.Response) -> tuple[int, str, int, str]:
    body = response.json()
    assert set(body) >= {"error", "error_description", "error_codes", "timestamp", "trace_id"}
    assert "correlation_id" in body
    return response.status_code, body["error"], body["error_codes"][0], body["error_description"]


def test_token_errors(emu: RunningEmulator, http: httpx.Client) -> None:
    tenant = emu.tenant
    rotator = emu.env["AZURE_CLIENT_ID"]
    status, error, code, text = _aad(token_for(http, emu, rotator, "wrong", GRAPH))
    assert (status, error, code) == (401, "invalid_client", 7000215)
    assert text.startswith("AADSTS7000215:")
    status, error, code, _ = _aad(
        token_for(http, emu, "11111111-1111-4111-8111-111111111111", "x", GRAPH)
    )
    assert (status, error, code) == (400, "unauthorized_client", 700016)
    status, error, code, _ = _aad(
        token_for(
            http,
            emu,
            rotator,
            emu.env["AZURE_CLIENT_SECRET"],
            "https://graph.microsoft.com/User.Read",
        )
    )
    assert (status, error, code) == (400, "invalid_scope", 1002012)
    status, error, code, _ = _aad(
        token_for(http, emu, rotator, emu.env["AZURE_CLIENT_SECRET"], "api://nothing/.default")
    )
    assert (status, code) == (400, 500011)

    expired = tenant.create_app(
        "expired-secret", secrets=[("expired-value-1234", datetime.now(UTC) - timedelta(days=1))]
    )
    status, error, code, _ = _aad(token_for(http, emu, expired.app_id, "expired-value-1234", GRAPH))
    assert (status, error, code) == (401, "invalid_client", 7000222)

    orphan = tenant.create_app(
        "no-sp",
        service_principal=False,
        secrets=[("orphan-secret-value", datetime.now(UTC) + timedelta(days=1))],
    )
    status, error, code, _ = _aad(token_for(http, emu, orphan.app_id, "orphan-secret-value", GRAPH))
    assert (status, code) == (400, 7000229)


def test_sync_credential_surfaces_aadsts(emu: RunningEmulator) -> None:
    cred = _sync_cred(emu, emu.env["AZURE_CLIENT_ID"], "not-the-secret")
    with pytest.raises(ClientAuthenticationError) as info:
        cred.get_token(GRAPH)
    assert "AADSTS7000215" in str(info.value)


def _cert_app(emu: RunningEmulator, name: str):  # type: ignore[no-untyped-def]
    cert = make_cert(name)
    app = emu.tenant.create_app(name)
    emu.tenant.add_certificate(app.id, cert.der)
    return app, cert


def test_sync_certificate_credential_rs256(emu: RunningEmulator) -> None:
    app, cert = _cert_app(emu, "cert-sync")
    cred = SyncCertificateCredential(
        emu.tenant.tenant_id,
        app.app_id,
        certificate_data=cert.pem,
        **sdk_clients.identity_options(emu.base_url, str(emu.ca_file)),  # type: ignore[arg-type]
    )
    claims = claims_of(cred.get_token(GRAPH).token)
    assert claims["appidacr"] == "2"
    assert claims["appid"] == app.app_id


async def test_async_certificate_credential_ps256(emu: RunningEmulator) -> None:
    app, cert = _cert_app(emu, "cert-async")
    async with CertificateCredential(
        emu.tenant.tenant_id,
        app.app_id,
        certificate_data=cert.pem,
        **sdk_clients.identity_options(emu.base_url, str(emu.ca_file)),  # type: ignore[arg-type]
    ) as cred:
        token = await cred.get_token(VAULT)
    assert claims_of(token.token)["appidacr"] == "2"


async def test_unregistered_certificate_is_refused(emu: RunningEmulator) -> None:
    app, _ = _cert_app(emu, "cert-other")
    stranger = make_cert("stranger")
    async with CertificateCredential(
        emu.tenant.tenant_id,
        app.app_id,
        certificate_data=stranger.pem,
        **sdk_clients.identity_options(emu.base_url, str(emu.ca_file)),  # type: ignore[arg-type]
    ) as cred:
        with pytest.raises(ClientAuthenticationError) as info:
            await cred.get_token(GRAPH)
    assert "AADSTS700027" in str(info.value)


def test_removed_secret_stops_working_at_once(emu: RunningEmulator, http: httpx.Client) -> None:
    app = emu.tenant.create_app(
        "remove-me", secrets=[("remove-me-secret-value", datetime.now(UTC) + timedelta(days=5))]
    )
    assert token_for(http, emu, app.app_id, "remove-me-secret-value", GRAPH).status_code == 200
    key_id = emu.tenant.passwords(app.app_id)[0].key_id
    emu.tenant.remove_password(app.id, key_id)
    assert token_for(http, emu, app.app_id, "remove-me-secret-value", GRAPH).status_code == 401


def test_propagation_delay(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Early requests with a new secret fail on some replicas; later all succeed."""
    import time

    with start_emulator(apps=0, seed=3, propagation_seconds=1.5, workdir=tmp_path) as emu:
        app = emu.tenant.app_by_display_name("myclient")
        context_file = str(emu.ca_file)
        import ssl

        with httpx.Client(
            base_url=emu.base_url, verify=ssl.create_default_context(cafile=context_file)
        ) as http:
            cred = emu.tenant.add_password(app.id, "fresh", datetime.now(UTC) + timedelta(days=30))
            early = [
                token_for(http, emu, app.app_id, cred.secret_text, GRAPH).status_code
                for _ in range(12)
            ]
            assert set(early) <= {200, 401}
            # Each replica learns the secret at its own random moment within 1.5 s.
            assert 401 in early or all(time.monotonic() >= t for t in cred.visible_at), early
            time.sleep(1.6)
            late = [
                token_for(http, emu, app.app_id, cred.secret_text, GRAPH).status_code
                for _ in range(12)
            ]
            assert late == [200] * 12
            body = token_for(http, emu, app.app_id, "x" + cred.secret_text, GRAPH).json()
            assert body["error_codes"] == [7000215]


def test_a_removed_secret_lingers_on_replicas_for_the_removal_lag(
    emu: RunningEmulator, http: httpx.Client
) -> None:
    end = datetime.now(UTC) + timedelta(days=30)
    kept = emu.tenant.create_app("lingering", secrets=[("linger-secret-value-1", end)])
    cut = emu.tenant.create_app("cut-at-once", secrets=[("cut-secret-value-1", end)])
    before = emu.tenant.removal_propagation_seconds
    try:
        emu.tenant.removal_propagation_seconds = 3600  # no replica forgets within the test
        emu.tenant.remove_password(kept.id, emu.tenant.passwords(kept.app_id)[0].key_id)
        for _ in range(8):
            assert token_for(http, emu, kept.app_id, "linger-secret-value-1",
                             GRAPH).status_code == 200
        emu.tenant.removal_propagation_seconds = 0  # forgotten everywhere at once
        emu.tenant.remove_password(cut.id, emu.tenant.passwords(cut.app_id)[0].key_id)
        refused = token_for(http, emu, cut.app_id, "cut-secret-value-1", GRAPH)
        assert refused.status_code == 401 and "AADSTS7000215" in refused.text
    finally:
        emu.tenant.removal_propagation_seconds = before


async def test_assertion_for_another_audience_is_700023(emu: RunningEmulator) -> None:
    """The SDK signs its assertion for the token endpoint it calls; reached under another
    name (an alias, a proxy) the audience is not the tenant's endpoint, which Entra
    refuses with AADSTS700023 — not 700027, which means "certificate not known (yet)"."""
    app, cert = _cert_app(emu, "cert-wrong-audience")
    alias = emu.base_url.replace("127.0.0.1", "localhost")
    async with CertificateCredential(
        emu.tenant.tenant_id,
        app.app_id,
        certificate_data=cert.pem,
        **sdk_clients.identity_options(alias, str(emu.ca_file)),  # type: ignore[arg-type]
    ) as cred:
        with pytest.raises(ClientAuthenticationError) as info:
            await cred.get_token(GRAPH)
    assert "AADSTS700023" in str(info.value)
    assert "AADSTS700027" not in str(info.value)


# ------------------------------------------------------------------ token versions
# The shape of an access token follows the resource's accessTokenAcceptedVersion, not the
# endpoint asked (always v2.0 here): Graph, Key Vault and a portal-made API get v1.


def _assert_v1(emu: RunningEmulator, claims: dict[str, object], client_id: str,
               acr: str) -> None:
    tid = emu.tenant.tenant_id
    assert claims["ver"] == "1.0"
    assert claims["iss"] == f"https://sts.windows.net/{tid}/"
    assert (claims["appid"], claims["appidacr"]) == (client_id, acr)
    assert not V2_ONLY & set(claims)


def _assert_v2(emu: RunningEmulator, claims: dict[str, object], client_id: str,
               acr: str) -> None:
    tid = emu.tenant.tenant_id
    assert claims["ver"] == "2.0"
    assert claims["iss"] == f"{emu.base_url}/{tid}/v2.0"
    assert (claims["azp"], claims["azpacr"]) == (client_id, acr)
    assert not V1_ONLY & set(claims)


async def test_graph_vault_and_a_portal_made_api_get_v1_tokens(emu: RunningEmulator) -> None:
    env = emu.env
    client = emu.tenant.app_by_display_name("myclient")
    for client_id, secret, scope in (
        (env["AZURE_CLIENT_ID"], env["AZURE_CLIENT_SECRET"], GRAPH),
        (env["AZURE_CLIENT_ID"], env["AZURE_CLIENT_SECRET"], VAULT),
        (client.app_id, emu.tenant.secret_of("myclient"), WEB_API),
    ):
        async with sdk_clients.async_secret_credential(
            env["AZURE_TENANT_ID"], client_id, secret,
            authority_host=env["ROTATOR_AUTHORITY_HOST"], ca_bundle=env["ROTATOR_CA_BUNDLE"],
        ) as cred:
            claims = claims_of((await cred.get_token(scope)).token)
        _assert_v1(emu, claims, client_id, "1")
    assert claims["aud"] == "api://myapis/mywebapi" and claims["roles"] == ["ReadOnly"]


async def test_an_api_asking_for_v2_gets_v2_tokens(emu: RunningEmulator) -> None:
    env = emu.env
    tenant = emu.tenant
    client = tenant.app_by_display_name("myclient")
    api = tenant.app_by_display_name("myv2api")
    assert api.to_json()["api"]["requestedAccessTokenVersion"] == 2
    async with sdk_clients.async_secret_credential(
        env["AZURE_TENANT_ID"], client.app_id, tenant.secret_of("myclient"),
        authority_host=env["ROTATOR_AUTHORITY_HOST"], ca_bundle=env["ROTATOR_CA_BUNDLE"],
    ) as cred:
        claims = claims_of((await cred.get_token(V2_API)).token)
    _assert_v2(emu, claims, client.app_id, "1")
    assert claims["aud"] == api.app_id  # a v2 audience is the API's app id
    assert claims["roles"] == ["ReadOnly"]
    # A certificate says 2 in the same claim.
    app, cert = _cert_app(emu, "cert-v2")
    async with CertificateCredential(
        tenant.tenant_id, app.app_id, certificate_data=cert.pem,
        **sdk_clients.identity_options(emu.base_url, str(emu.ca_file)),  # type: ignore[arg-type]
    ) as cert_cred:
        _assert_v2(emu, claims_of((await cert_cred.get_token(V2_API)).token), app.app_id, "2")
        _assert_v1(emu, claims_of((await cert_cred.get_token(GRAPH)).token), app.app_id, "2")


def test_the_version_follows_the_api_manifest(emu: RunningEmulator, http: httpx.Client) -> None:
    tenant = emu.tenant
    client = tenant.app_by_display_name("myclient")
    api = tenant.create_app("api-switching", owned_by_rotator=False,
                            identifier_uris=["api://myapis/switching"])
    scope = "api://myapis/switching/.default"

    def version() -> object:
        answer = token_for(http, emu, client.app_id, tenant.secret_of("myclient"), scope)
        return claims_of(answer.json()["access_token"])["ver"]

    assert version() == "1.0"
    admin = token_for(http, emu, emu.env["EMULATOR_ADMIN_CLIENT_ID"],
                      emu.env["EMULATOR_ADMIN_CLIENT_SECRET"], GRAPH).json()["access_token"]
    headers = {"Authorization": f"Bearer {admin}"}
    bad = http.patch(f"/v1.0/applications/{api.id}", headers=headers,
                     json={"api": {"requestedAccessTokenVersion": 3}})
    assert bad.status_code == 400
    ok = http.patch(f"/v1.0/applications/{api.id}", headers=headers,
                    json={"api": {"requestedAccessTokenVersion": 2}})
    assert ok.status_code == 204, ok.text
    assert version() == "2.0"
