"""verify over both token versions: the verify scope's resource decides whether the
token names the client in appid/appidacr (v1) or azp/azpacr (v2)."""

from __future__ import annotations

import pytest

from rotator.domain.credentials import CredentialKind
from rotator.domain.states import RotationState
from tests.support.invariants import assert_invariants
from tests.support.world import World, make_app, rotate


@pytest.mark.parametrize("version", [1, 2])
@pytest.mark.parametrize("kind", [CredentialKind.SECRET, CredentialKind.CERTIFICATE])
async def test_a_rotation_is_proven_by_either_token_version(
    world: World, version: int, kind: CredentialKind
) -> None:
    world.probe.token_version = version
    app = make_app(world, kind)
    result = await rotate(world, app)
    assert result.state is RotationState.COMPLETED, result.last_error
    assert_invariants(world, app)


async def test_a_v2_token_for_another_kind_of_credential_fails_verify(world: World) -> None:
    world.probe.token_version = 2
    app = make_app(world, CredentialKind.SECRET)
    real = world.probe._token

    def as_certificate(client_id: str, fake_app, acr: str):  # type: ignore[no-untyped-def]
        return real(client_id, fake_app, "2")  # the token says a certificate was used

    world.probe._token = as_certificate  # type: ignore[method-assign]
    result = await rotate(world, app)
    assert result.state is RotationState.FAILED
    assert "azpacr=2" in (result.last_error or "")
    assert_invariants(world, app)
