"""A process whose lease on a rotation lapsed never writes outside the database for it.

Found with three replicas on short leases under load: a replica held up past its
lease wrote to Graph and Key Vault for a rotation another replica had taken over, and
the two drove one rotation at once. Every write to Graph or Key Vault is now fenced:
the writer first makes sure it still owns the rotation with at least half a lease to go.
"""

from __future__ import annotations

import pytest

from rotator.domain.rotation import RotationReason
from rotator.domain.states import RotationState
from rotator.engine.context import LeaseLost, fence
from rotator.engine.driver import advance_once, drive
from rotator.engine.start import plan_rotation, start_rotation
from tests.support.fakes import Crash
from tests.support.world import World

SLOW = "replica-a.example:101:slow"
OTHER = "replica-b.example:202:other"


async def test_a_writer_whose_lease_lapsed_does_not_write_the_consumer_secret(
    world: World
) -> None:
    app = world.directory.add_app("orders")
    world.manage(app)
    deps = world.deps(owner=SLOW, lease_seconds=10)

    def stop_once_verified(name: str) -> None:
        if name == "after:db.verified":
            raise Crash(name)

    plan = await plan_rotation(deps, app.app_id)
    started = await start_rotation(deps, plan, reason=RotationReason.MANUAL)
    with pytest.raises(Crash):
        await drive(world.deps(owner=SLOW, lease_seconds=10, checkpoint=stop_once_verified),
                    started.id)
    held = world.store.claim(started.id, SLOW, world.clock.now(), 10)
    assert held is not None and held.state is RotationState.VERIFIED
    consumer = f"{app.display_name}-secret"
    before = world.vault.latest(consumer)
    # Held up past its lease; another replica takes the rotation over.
    world.clock.advance(11)
    assert world.store.claim(started.id, OTHER, world.clock.now(), 300) is not None
    with pytest.raises(LeaseLost):
        await advance_once(deps, held)
    assert world.vault.latest(consumer) == before  # the consumer secret was not touched


async def test_a_fence_renews_a_lease_that_runs_low_and_leaves_a_fresh_one_alone(
    world: World
) -> None:
    app = world.directory.add_app("orders")
    world.manage(app)
    deps = world.deps(owner=SLOW, lease_seconds=10)
    plan = await plan_rotation(deps, app.app_id)
    started = await start_rotation(deps, plan, reason=RotationReason.MANUAL)
    held = world.store.claim(started.id, SLOW, world.clock.now(), 10)
    assert held is not None and held.lease_expires_at is not None
    await fence(deps, held)  # ten seconds to go: nothing to do
    current = world.store.get_rotation(started.id)
    assert current is not None and current.lease_expires_at == held.lease_expires_at
    world.clock.advance(6)  # four to go, under half a lease: renewed
    await fence(deps, held)
    current = world.store.get_rotation(started.id)
    assert current is not None and current.lease_expires_at is not None
    assert current.lease_expires_at > held.lease_expires_at
