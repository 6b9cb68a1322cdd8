"""The engine tests' invariant check reads the fakes right: it passes after a clean
rotation and fails on each kind of damage done to the fake tenant, vault or database."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import timedelta

import pytest
import sqlalchemy as sa

from rotator.domain.credentials import Credential, CredentialKind
from rotator.domain.secret_value import SecretValue
from rotator.domain.states import RotationState
from tests.support.fakes import CANARY
from tests.support.invariants import assert_invariants
from tests.support.world import World, make_app, rotate


@pytest.mark.parametrize("kind", list(CredentialKind))
async def test_damage_to_the_fakes_breaks_the_invariants(world: World,
                                                         kind: CredentialKind) -> None:
    app = make_app(world, kind)
    result = await rotate(world, app)
    assert result.state is RotationState.COMPLETED, result.last_error
    assert_invariants(world, app)
    now = world.clock.now()

    # a credential named after a rotation nobody recorded
    stray = Credential(str(uuid.uuid4()), kind, "rotator:nobody", now, now + timedelta(days=9))
    app.credentials.append(stray)
    with pytest.raises(AssertionError, match="orphaned"):
        assert_invariants(world, app)
    app.credentials.remove(stray)

    # the consumer secret's latest version names a credential the app does not have
    versions = world.vault.secrets["orders-secret"]
    latest = versions[-1]
    versions.append(replace(latest, tags={**latest.tags, "key_id": "gone"}))
    with pytest.raises(AssertionError, match="does not have"):
        assert_invariants(world, app)
    versions.pop()

    # every credential of the app has ended
    ended = [replace(c, end=now - timedelta(seconds=1)) for c in app.credentials]
    kept, app.credentials = app.credentials, ended
    with pytest.raises(AssertionError, match=f"no valid {kind}"):
        assert_invariants(world, app)
    app.credentials = kept

    # a value in the database
    with world.store.engine.begin() as conn:
        conn.execute(sa.text("UPDATE rotations SET last_error = :e"), {"e": f"{CANARY}x"})
    with pytest.raises(AssertionError, match="secret value is in the database file"):
        assert_invariants(world, app)


async def test_a_secret_consumer_holding_another_value_is_caught(world: World) -> None:
    app = make_app(world, CredentialKind.SECRET)
    await rotate(world, app)
    versions = world.vault.secrets["orders-secret"]
    versions.append(replace(versions[-1], value=SecretValue(f"{CANARY}{uuid.uuid4().hex}")))
    with pytest.raises(AssertionError, match="holds another value"):
        assert_invariants(world, app)


async def test_a_removal_before_the_hook_or_without_evidence_is_caught(world: World) -> None:
    app = make_app(world, CredentialKind.SECRET)
    world.manage(app, retire_when="unused", grace_hours=0, retire_max_wait_hours=1,
                 app_toml='[[app.hook]]\ntype = "command"\nname = "restart"\nargv = ["true"]\n'
                          'events = ["promoted"]\n')

    class Usage:  # the report: the new credential in use since promote, the old one silent
        async def last_sign_ins(self, app_id: str) -> dict[str, object]:
            world.clock.advance(1)
            return {k.key_id: world.clock.now() for k in app.credentials
                    if k.display_name and k.display_name.startswith("rotator:")}

    class Hooks:
        async def send(self, hook: object, event: object) -> None:
            return None

    result = await rotate(world, app, retire_now=False, usage=Usage(), hooks=Hooks())
    assert result.state is RotationState.COMPLETED, result.last_error
    assert_invariants(world, app)
    with world.store.engine.begin() as conn:
        # 7. a removal in unused mode by the grace rule alone, no fallback recorded
        conn.execute(sa.text("UPDATE audit_events SET details = :d WHERE rotation_id = :r "
                             "AND details LIKE '%retired_by%'"),
                     {"d": '{"retired_by": "grace"}', "r": result.id})
    with pytest.raises(AssertionError, match="without evidence or a recorded fallback"):
        assert_invariants(world, app)
    with world.store.engine.begin() as conn:
        # 6. the old credential gone although the hook never took the promoted event
        conn.execute(sa.text("UPDATE hook_deliveries SET status = 'pending' "
                             "WHERE rotation_id = :r"), {"r": result.id})
    with pytest.raises(AssertionError, match="before hook restart took the promoted event"):
        assert_invariants(world, app)
