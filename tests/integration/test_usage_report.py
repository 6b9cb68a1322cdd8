"""The usage report adapter against the emulated tenant, and against shapes it must refuse."""

from __future__ import annotations

import time
from datetime import timedelta

import httpx
import pytest

from rotator.adapters.sdk_clients import async_secret_credential
from rotator.adapters.usage_report import GraphUsageReport, _checked, _rows, beta_url
from rotator.emulator.runner import RunningEmulator
from rotator.ports import DirectoryError, UsageReportUnavailable
from tests.support.emulated import make_app, token_works


async def test_the_report_lists_the_keys_that_signed_in(emu: RunningEmulator) -> None:
    saved = emu.state.signins.lag
    emu.state.signins.lag = timedelta(0)
    try:
        app = make_app(emu)
        assert token_works(emu, app.app_id, app.old_secret)
        env = emu.env
        credential = async_secret_credential(
            env["AZURE_TENANT_ID"], env["AZURE_CLIENT_ID"], env["AZURE_CLIENT_SECRET"],
            authority_host=env["ROTATOR_AUTHORITY_HOST"], ca_bundle=env["ROTATOR_CA_BUNDLE"])
        try:
            report = GraphUsageReport(credential, graph_url=env["ROTATOR_GRAPH_URL"],
                                      ca_bundle=env["ROTATOR_CA_BUNDLE"])
            found = await report.last_sign_ins(app.app_id)
        finally:
            await credential.close()
    finally:
        emu.state.signins.lag = saved
    assert list(found) == [app.old_key_id]
    when = found[app.old_key_id]
    assert when is not None and abs(when.timestamp() - time.time()) < 60


def test_the_beta_url_is_derived_from_the_graph_url() -> None:
    assert beta_url("https://graph.microsoft.com/v1.0") == "https://graph.microsoft.com/beta"
    assert beta_url("https://127.0.0.1:8443/v1.0/") == "https://127.0.0.1:8443/beta"


def _response(status: int, body: object, **headers: str) -> httpx.Response:
    return httpx.Response(status, json=body, headers=headers)


@pytest.mark.parametrize(("status", "body"), [
    (403, {"error": {"code": "Authorization_RequestDenied", "message": "no"}}),
    (404, {"error": {"code": "ResourceNotFound", "message": "gone"}}),
    (200, {"items": []}),
    (200, ["not", "an", "object"]),
])
def test_refusals_and_unknown_shapes_are_unavailable(status: int, body: object) -> None:
    with pytest.raises(UsageReportUnavailable):
        _checked(_response(status, body))


@pytest.mark.parametrize("value", [
    [{"id": "x"}],  # no keyId
    [{"keyId": "k", "signInActivity": "yesterday"}],
    [{"keyId": "k", "signInActivity": {"lastSignInDateTime": "not a date"}}],
    [{"keyId": "k", "signInActivity": {"lastSignInDateTime": "2026-11-28T10:00:00"}}],
])
def test_items_of_a_changed_shape_are_unavailable(value: object) -> None:
    with pytest.raises(UsageReportUnavailable):
        _rows({"value": value})


def test_throttling_and_outages_are_transient() -> None:
    with pytest.raises(DirectoryError) as caught:
        _checked(_response(429, {"error": {"code": "TooManyRequests"}}, **{"Retry-After": "7"}))
    assert caught.value.transient and caught.value.retry_after == 7
    with pytest.raises(DirectoryError):
        _checked(_response(503, {}))


def test_the_latest_sign_in_per_key_wins_and_null_means_never() -> None:
    rows = _rows({"value": [
        {"keyId": "a", "signInActivity": {"lastSignInDateTime": "2026-11-28T10:00:00Z"}},
        {"keyId": "a", "signInActivity": {"lastSignInDateTime": "2026-11-28T11:00:00Z"}},
        {"keyId": "b", "signInActivity": None},
    ]})
    assert rows["a"] is not None and rows["a"].hour == 11 and rows["b"] is None
