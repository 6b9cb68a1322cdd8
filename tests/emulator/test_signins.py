"""The credential usage report: every successful token request, per credential, after a lag."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime, timedelta

import httpx
import pytest

from rotator.emulator.model import utcnow
from rotator.emulator.runner import RunningEmulator
from rotator.emulator.seed import CLIENT_NAME, seed_tenant
from rotator.emulator.signins import SignInLog
from rotator.emulator.tenant import GRAPH_APP_ID
from tests.emulator.helpers import token_for

GRAPH_SCOPE = "https://graph.microsoft.com/.default"
REPORT = "/beta/reports/appCredentialSignInActivities"


@pytest.fixture
def no_lag(emu: RunningEmulator) -> Iterator[SignInLog]:
    log = emu.state.signins
    saved = log.lag
    log.lag = timedelta(0)
    yield log
    log.lag = saved


def _rotator_token(http: httpx.Client, emu: RunningEmulator) -> str:
    env = emu.env
    response = token_for(http, emu, env["AZURE_CLIENT_ID"], env["AZURE_CLIENT_SECRET"],
                         GRAPH_SCOPE)
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


def test_a_sign_in_shows_in_the_report_with_the_real_fields(
    http: httpx.Client, emu: RunningEmulator, no_lag: SignInLog
) -> None:
    client = emu.tenant.app_by_display_name(CLIENT_NAME)
    assert client is not None
    before = utcnow().replace(microsecond=0)
    response = token_for(http, emu, client.app_id, emu.tenant.secret_of(CLIENT_NAME),
                         "api://myapis/mywebapi/.default")
    assert response.status_code == 200, response.text
    token = _rotator_token(http, emu)
    report = http.get(REPORT, params={"$filter": f"appId eq '{client.app_id}'"},
                      headers={"Authorization": f"Bearer {token}"})
    assert report.status_code == 200, report.text
    [item] = report.json()["value"]
    secret = client.password_credentials[0]
    assert item["keyId"] == secret.key_id and item["appId"] == client.app_id
    assert item["appObjectId"] == client.id
    sp = emu.tenant.sp_by_app_id(client.app_id)
    assert sp is not None and item["servicePrincipalObjectId"] == sp.id
    assert (item["credentialOrigin"], item["keyType"], item["keyUsage"]) == (
        "application", "clientSecret", "verify")
    assert set(item) >= {"id", "createdDateTime", "expirationDateTime", "signInActivity"}
    last = datetime.fromisoformat(item["signInActivity"]["lastSignInDateTime"])
    assert last >= before
    assert item["signInActivity"]["lastSignInRequestId"]


def test_the_report_lags_behind_the_sign_ins(
    http: httpx.Client, emu: RunningEmulator, no_lag: SignInLog
) -> None:
    no_lag.lag = timedelta(seconds=1.5)
    client = emu.tenant.app_by_display_name(CLIENT_NAME)
    assert client is not None
    token = _rotator_token(http, emu)
    query = {"$filter": f"appId eq '{client.app_id}'"}
    headers = {"Authorization": f"Bearer {token}"}
    time.sleep(1.6)  # earlier sign-ins are visible now
    shown = http.get(REPORT, params=query, headers=headers).json()["value"]
    old = max((i["signInActivity"]["lastSignInDateTime"] for i in shown), default=None)
    assert token_for(http, emu, client.app_id, emu.tenant.secret_of(CLIENT_NAME),
                     "api://myapis/mywebapi/.default").status_code == 200
    now_shown = http.get(REPORT, params=query, headers=headers).json()["value"]
    assert max((i["signInActivity"]["lastSignInDateTime"] for i in now_shown),
               default=None) == old
    time.sleep(1.6)
    later = http.get(REPORT, params=query, headers=headers).json()["value"]
    newest = max(i["signInActivity"]["lastSignInDateTime"] for i in later)
    assert old is None or newest > old


def test_the_report_needs_audit_log_read_all(
    http: httpx.Client, emu: RunningEmulator
) -> None:
    client = emu.tenant.app_by_display_name(CLIENT_NAME)
    assert client is not None
    # myclient has no Graph role at all
    response = token_for(http, emu, client.app_id, emu.tenant.secret_of(CLIENT_NAME),
                         GRAPH_SCOPE)
    token = response.json()["access_token"]
    refused = http.get(REPORT, headers={"Authorization": f"Bearer {token}"})
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "Authorization_RequestDenied"
    bad = http.get(REPORT, params={"$filter": "displayName eq 'x'"},
                   headers={"Authorization": f"Bearer {_rotator_token(http, emu)}"})
    assert bad.status_code == 400


def test_a_seed_option_withholds_the_permission() -> None:
    for audit_log, expected in ((True, True), (False, False)):
        tenant = seed_tenant(apps=0, audit_log=audit_log)
        rotator = tenant.sp_by_app_id(tenant.rotator_app_id)
        graph = tenant.sp_by_app_id(GRAPH_APP_ID)
        assert rotator is not None and graph is not None
        assert ("AuditLog.Read.All" in tenant.roles_for(rotator, graph)) is expected
