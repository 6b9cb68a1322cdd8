"""The API's token check (the Entra adapter) against the emulated tenant's discovery
documents and keys: v1 and v2 tokens, a key roll, keys never published."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import pytest

from rotator.adapters.entra_tokens import EntraTokenValidator
from rotator.emulator.runner import RunningEmulator
from rotator.emulator.seed import API_READER_NAME, ROTATOR_API_NAME, ROTATOR_API_URI
from rotator.ports import Caller, TokenKeysUnavailable, TokenRejected
from tests.support.api import claims_of, reader_token, seeded_client, unpublished_key


def validator(emu: RunningEmulator, *audiences: str, **kw: float) -> EntraTokenValidator:
    return EntraTokenValidator(
        authority_host=emu.base_url, tenant_id=emu.tenant.tenant_id,
        audiences=audiences or (ROTATOR_API_URI,), ca_bundle=str(emu.ca_file), **kw)


def check(v: EntraTokenValidator, token: str) -> Caller:
    return asyncio.run(v.validate(token))


def test_a_v1_token_names_its_caller(emu: RunningEmulator) -> None:
    token = reader_token(emu)
    claims = claims_of(token)
    assert claims["iss"] == f"https://sts.windows.net/{emu.tenant.tenant_id}/"
    caller = check(validator(emu), token)
    assert caller.client_id == seeded_client(emu, API_READER_NAME)[0]
    assert caller.object_id == claims["oid"]
    assert caller.roles == {"ReadOnly"}


@pytest.fixture
def v2_api(emu: RunningEmulator) -> Iterator[str]:
    """rotator's API app set to v2 access tokens (aud is then its client id); put back after."""
    app = emu.tenant.app_by_display_name(ROTATOR_API_NAME)
    emu.tenant.set_access_token_version(app.id, 2)
    try:
        yield app.app_id
    finally:
        emu.tenant.set_access_token_version(app.id, None)


def test_a_v2_token_needs_the_client_id_as_audience(emu: RunningEmulator, v2_api: str) -> None:
    token = reader_token(emu)
    claims = claims_of(token)
    assert (claims["aud"], claims["ver"]) == (v2_api, "2.0")
    caller = check(validator(emu, ROTATOR_API_URI, v2_api), token)
    assert caller.client_id == claims["azp"] == seeded_client(emu, API_READER_NAME)[0]
    with pytest.raises(TokenRejected, match="another audience"):
        check(validator(emu, ROTATOR_API_URI), token)


def test_a_rolled_key_is_fetched_once_when_a_token_names_it(emu: RunningEmulator) -> None:
    v = validator(emu, refetch_interval_seconds=0)
    check(v, reader_token(emu))
    assert v.fetches == 1
    check(v, reader_token(emu))
    assert v.fetches == 1  # cached
    emu.state.tokens.roll()
    rolled = reader_token(emu)
    assert check(v, rolled).roles == {"ReadOnly"}
    assert v.fetches == 2


def test_a_key_never_published_is_refused_after_one_fresh_read(emu: RunningEmulator) -> None:
    eager = validator(emu, refetch_interval_seconds=0)
    real = reader_token(emu)
    check(eager, real)
    with pytest.raises(TokenRejected, match="does not publish"):
        check(eager, unpublished_key(real))
    assert eager.fetches == 2  # one fresh read for the unknown key, no more
    # With the usual interval, forged kids do not turn into reads of the tenant's keys.
    throttled = validator(emu)
    check(throttled, real)
    for _ in range(5):
        with pytest.raises(TokenRejected):
            check(throttled, unpublished_key(real))
    assert throttled.fetches == 1


def test_keys_that_cannot_be_read_are_not_a_refusal(emu: RunningEmulator) -> None:
    v = EntraTokenValidator(authority_host=emu.base_url, tenant_id=str(uuid.uuid4()),
                            audiences=(ROTATOR_API_URI,), ca_bundle=str(emu.ca_file))
    with pytest.raises(TokenKeysUnavailable):
        check(v, reader_token(emu))
