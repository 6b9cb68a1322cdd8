"""The tenant's app management policy meets the engine (fake Graph, real engine and database)."""

from __future__ import annotations

from datetime import timedelta

from rotator.domain.app_management import CredentialRestrictions
from rotator.domain.states import RotationState
from tests.support.fakes import FakeApp
from tests.support.invariants import assert_invariants
from tests.support.world import World, rotate

THIRTY_DAYS = CredentialRestrictions("p-tenant", "tenant default",
                                     password_max_lifetime=timedelta(days=30))


def _lifetime_days(app: FakeApp, key_id: str | None) -> float:
    new = app.credential_of(key_id or "")
    assert new is not None and new.start is not None and new.end is not None
    return (new.end - new.start).total_seconds() / 86400


async def test_a_readable_policy_caps_the_lifetime_and_says_why(world: World) -> None:
    app = world.directory.add_app("orders")
    app.policy = THIRTY_DAYS
    world.manage(app, lifetime_days=180)
    result = await rotate(world, app)
    assert result.state is RotationState.COMPLETED, result.last_error
    assert 29.9 < _lifetime_days(app, result.new_key_id) <= 30
    # One addPassword: the cap was known before asking.
    assert world.directory.calls.count("add_password") == 1
    events = world.store.history(rotation_id=result.id)
    create = next(e for e in events if e.step == "create")
    assert "capped at 30 days instead of 180" in create.message
    assert "p-tenant" in create.message and "tenant default" in create.message
    assert create.details["allowed_days"] == 30
    assert_invariants(world, app)


async def test_blocked_password_addition_creates_nothing(world: World) -> None:
    app = world.directory.add_app("orders")
    app.policy = CredentialRestrictions("p-nosecrets", "application",
                                        password_addition_blocked=True)
    world.manage(app)
    result = await rotate(world, app)
    assert result.state is RotationState.FAILED
    assert "p-nosecrets" in (result.last_error or "")
    assert "certificate" in (result.last_error or "")
    assert "add_password" not in world.directory.calls
    assert len(app.credentials) == 1
    assert world.vault.latest("orders-secret") is None


async def test_an_unreadable_policy_is_met_through_graphs_refusals(world: World) -> None:
    app = world.directory.add_app("orders")
    app.policy = THIRTY_DAYS
    app.policy_readable = False  # no Policy.Read.All
    world.manage(app, lifetime_days=180)
    result = await rotate(world, app)
    assert result.state is RotationState.COMPLETED, result.last_error
    assert 29.9 < _lifetime_days(app, result.new_key_id) <= 30
    assert len(app.credentials) == 1  # refused requests created nothing
    stage = next(e for e in world.store.history(rotation_id=result.id) if e.step == "stage")
    assert "capped at 30 days instead of 180" in stage.message and "p-tenant" in stage.message
    assert stage.details["cap_found_by"] == "refused"
    assert_invariants(world, app)


async def test_an_unreadable_blocking_policy_is_named_from_the_refusal(world: World) -> None:
    app = world.directory.add_app("orders")
    app.policy = CredentialRestrictions("p-nosecrets", "application",
                                        password_addition_blocked=True)
    app.policy_readable = False
    world.manage(app)
    result = await rotate(world, app)
    assert result.state is RotationState.FAILED
    assert "p-nosecrets" in (result.last_error or "")
    assert "certificate" in (result.last_error or "")
    assert len(app.credentials) == 1


async def test_certificates_are_capped_by_the_key_lifetime(world: World) -> None:
    app = world.directory.add_cert_app("orders")
    app.policy = CredentialRestrictions("p-keys", "tenant default",
                                        key_max_lifetime=timedelta(days=60))
    world.manage(app, lifetime_days=180, credential="certificate")
    result = await rotate(world, app)
    assert result.state is RotationState.COMPLETED, result.last_error
    assert 59.9 < _lifetime_days(app, result.new_key_id) <= 60
