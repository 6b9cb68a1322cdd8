"""The client factories' cloud decisions, the admin routes, filters and lost responses."""

from __future__ import annotations

import ssl
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from msgraph.generated.applications.item.add_password.add_password_post_request_body import (
    AddPasswordPostRequestBody,
)
from msgraph.generated.models.o_data_errors.o_data_error import ODataError
from msgraph.generated.models.password_credential import PasswordCredential

from rotator.adapters import sdk_clients
from rotator.emulator.runner import RunningEmulator
from tests.emulator.helpers import rotator_credential, token_for


def test_identity_options_per_cloud(ca_path: Path) -> None:
    assert sdk_clients.identity_options(None, None) == {}
    public = sdk_clients.identity_options("https://login.microsoftonline.com", None)
    assert public == {"authority": "https://login.microsoftonline.com"}
    emulated = sdk_clients.identity_options("https://127.0.0.1:8443/", str(ca_path))
    assert emulated["authority"] == "https://127.0.0.1:8443"
    assert emulated["disable_instance_discovery"] is True
    bundle = Path(str(emulated["connection_verify"])).read_text()
    # The emulator's CA is added to the system store, never substituted for it.
    assert ca_path.read_text().strip() in bundle
    assert bundle.count("BEGIN CERTIFICATE") > 1


def test_graph_scopes() -> None:
    assert sdk_clients.graph_scopes("https://graph.microsoft.com/v1.0") == [
        "https://graph.microsoft.com/.default"
    ]
    assert sdk_clients.graph_scopes("https://graph.microsoft.us/v1.0") == [
        "https://graph.microsoft.us/.default"
    ]
    assert sdk_clients.graph_scopes("https://127.0.0.1:9999/v1.0") == [
        "https://graph.microsoft.com/.default"
    ]


def test_default_credential_accepts_emulator_options(emu: RunningEmulator) -> None:
    credential = sdk_clients.async_default_credential(
        authority_host=emu.base_url, ca_bundle=str(emu.ca_file)
    )
    assert credential is not None


def test_admin_routes(emu: RunningEmulator, http: httpx.Client) -> None:
    assert http.get("/_emulator/health").json()["status"] == "ok"
    changed = http.post(
        "/_emulator/faults",
        json={"latency_ms": 5, "error_rates": {"vault.*": {"503": 0.0}}, "lifetime_max_days": 90},
    ).json()
    assert changed["latency_ms"] == 5 and changed["lifetime_max_days"] == 90
    assert emu.tenant.lifetime_max_days == 90
    assert http.post("/_emulator/faults", json={"nonsense": 1}).status_code == 400
    assert "requests" in http.get("/_emulator/stats").json()


def test_list_filters(emu: RunningEmulator, http: httpx.Client) -> None:
    token = token_for(
        http,
        emu,
        emu.env["AZURE_CLIENT_ID"],
        emu.env["AZURE_CLIENT_SECRET"],
        "https://graph.microsoft.com/.default",
    ).json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    client = emu.tenant.app_by_display_name("myclient")
    by_app_id = http.get(
        "/v1.0/applications", params={"$filter": f"appId eq '{client.app_id}'"}, headers=headers
    ).json()["value"]
    assert [a["id"] for a in by_app_id] == [client.id]
    prefixed = http.get(
        "/v1.0/applications",
        params={"$filter": "startswith(displayName,'myclient')"},
        headers=headers,
    ).json()["value"]
    assert {a["displayName"] for a in prefixed} == {"myclient", "myclient-noconsent"}
    bad = http.get("/v1.0/applications", params={"$top": "1000"}, headers=headers)
    assert bad.status_code == 400
    unsupported = http.get(
        "/v1.0/applications", params={"$filter": "endswith(displayName,'x')"}, headers=headers
    )
    assert unsupported.json()["error"]["code"] == "Request_UnsupportedQuery"


async def test_lost_response_still_creates_the_secret(emu: RunningEmulator) -> None:
    """The classic orphan: Graph applied addPassword but the caller saw a 500."""
    app = emu.tenant.create_app("lossy")
    emu.faults.update({"lost_response_rates": {"graph.addPassword": 1.0}})
    async with rotator_credential(emu) as cred:
        graph = sdk_clients.make_graph_client(
            cred, graph_url=emu.env["ROTATOR_GRAPH_URL"], ca_bundle=str(emu.ca_file)
        )
        body = AddPasswordPostRequestBody(
            password_credential=PasswordCredential(
                display_name="rotation-42", end_date_time=datetime.now(UTC) + timedelta(days=30)
            )
        )
        with pytest.raises(ODataError) as info:
            await graph.applications.by_application_id(app.id).add_password.post(body)
    assert info.value.response_status_code == 500
    assert [p.display_name for p in emu.tenant.passwords(app.app_id)] == ["rotation-42"]


def test_ssl_context_trusts_system_and_extra(ca_path: Path) -> None:
    context = sdk_clients.ssl_context(str(ca_path))
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert len(context.get_ca_certs()) >= 1
