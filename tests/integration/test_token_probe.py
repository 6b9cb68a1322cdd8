"""The token probe verification uses, against the emulated token endpoint through
azure-identity: a throttled request is one request whose Retry-After comes back to
verification, and a wrong assertion audience is a configuration error, not a credential
that has not propagated yet."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from rotator.adapters.token_probe import AzureIdentityTokenProbe
from rotator.domain.secret_value import SecretValue
from rotator.domain.verification import AttemptKind, judge_refusal
from rotator.emulator.runner import RunningEmulator
from tests.support.certs import make_cert

GRAPH = "https://graph.microsoft.com/.default"


async def test_a_throttled_token_request_is_one_request_and_hands_back_retry_after(
    emu: RunningEmulator,
) -> None:
    app = emu.tenant.create_app(
        "probe-throttled", secrets=[("probe-throttled-value", datetime.now(UTC) + timedelta(5))]
    )
    probe = AzureIdentityTokenProbe(authority_host=emu.base_url, ca_bundle=str(emu.ca_file))
    before = emu.faults.count_of("token", 429)
    emu.faults.update({"error_rates": {"token": {"429": 1.0}}, "injected_retry_after_seconds": 7})
    outcome = await probe.try_secret(
        emu.tenant.tenant_id, app.app_id, SecretValue("probe-throttled-value"), GRAPH
    )
    assert not outcome.ok
    assert outcome.status == 429 and outcome.retry_after == 7
    assert outcome.error_code is None  # says nothing about the credential
    # azure-core did not retry behind verification's back (it would sleep 7 s each time).
    assert emu.faults.count_of("token", 429) - before == 1


async def test_a_wrong_assertion_audience_is_700023_and_fatal(emu: RunningEmulator) -> None:
    cert = make_cert("probe-audience")
    app = emu.tenant.create_app("probe-audience")
    emu.tenant.add_certificate(app.id, cert.der)
    # The same emulator under another name: the SDK signs the assertion for that name.
    alias = emu.base_url.replace("127.0.0.1", "localhost")
    probe = AzureIdentityTokenProbe(authority_host=alias, ca_bundle=str(emu.ca_file))
    outcome = await probe.try_certificate(
        emu.tenant.tenant_id, app.app_id, SecretValue(cert.pem.decode()), GRAPH
    )
    assert not outcome.ok and outcome.error_code == "AADSTS700023"
    verdict = judge_refusal(outcome.error_code, outcome.message, outcome.status)
    assert verdict.kind is AttemptKind.FATAL
    assert "authority host" in verdict.message
