"""Apps open to personal Microsoft accounts hold at most two client secrets."""

from __future__ import annotations

import uuid
from datetime import timedelta

from rotator.domain.credentials import Credential, CredentialKind
from rotator.domain.states import RotationState
from tests.support.fakes import FakeApp
from tests.support.invariants import assert_invariants
from tests.support.world import World, rotate


def _second_secret(world: World, app: FakeApp, days_left: float) -> str:
    now = world.clock.now()
    key = str(uuid.uuid4())
    app.credentials.append(Credential(key, CredentialKind.SECRET, "second",
                                      now - timedelta(days=100),
                                      now + timedelta(days=days_left), "sec"))
    app.values[key] = f"CANARY{uuid.uuid4().hex}"
    return key


async def test_an_expired_secret_makes_room_and_is_audited(world: World) -> None:
    app = world.directory.add_app("orders")
    app.sign_in_audience = "AzureADandPersonalMicrosoftAccount"
    expired = _second_secret(world, app, days_left=-5)
    world.manage(app)
    result = await rotate(world, app)
    assert result.state is RotationState.COMPLETED, result.last_error
    assert app.credential_of(expired) is None
    removal = [e for e in world.store.history(rotation_id=result.id)
               if e.details.get("removed_expired_key_id") == expired]
    assert removal and "signInAudience" in removal[0].message
    assert world.directory.calls.count("add_password") == 1
    assert_invariants(world, app)


async def test_two_valid_secrets_refuse_and_nothing_is_created(world: World) -> None:
    app = world.directory.add_app("orders")
    app.sign_in_audience = "PersonalMicrosoftAccount"
    other = _second_secret(world, app, days_left=100)
    world.manage(app)
    result = await rotate(world, app)
    assert result.state is RotationState.FAILED
    error = result.last_error or ""
    assert "PersonalMicrosoftAccount" in error and "at most 2" in error
    assert "never removes a valid secret" in error
    assert "add_password" not in world.directory.calls
    assert "remove_password" not in world.directory.calls
    assert {c.key_id for c in app.credentials} == {app.credentials[0].key_id, other}


async def test_organisation_only_apps_are_not_limited(world: World) -> None:
    app = world.directory.add_app("orders")
    _second_secret(world, app, days_left=100)
    _second_secret(world, app, days_left=200)
    world.manage(app)
    result = await rotate(world, app)
    assert result.state is RotationState.COMPLETED, result.last_error
