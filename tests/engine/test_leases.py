"""A process whose lease on a rotation lapsed never writes outside the database for it.

Found with three replicas on short leases under load: a replica held up past its
lease wrote to Graph and Key Vault for a rotation another replica had taken over, and
the two drove one rotation at once. Every write to Graph or Key Vault is now fenced:
the writer first makes sure it still owns the rotation with at least half a lease to go.
"""

from __future__ import annotations

from datetime import datetime

import pytest

from rotator.adapters.db import SqlStore
from rotator.domain.rotation import Rotation, RotationReason
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


class CountingClaims:
    """The real store, counting lease claims (renewals are claims by the owner)."""

    def __init__(self, store: SqlStore) -> None:
        self._store = store
        self.claims = 0

    def claim(self, rotation_id: str, owner: str, now: datetime, lease_seconds: float
              ) -> Rotation | None:
        self.claims += 1
        return self._store.claim(rotation_id, owner, now, lease_seconds)

    def __getattr__(self, name: str) -> object:
        return getattr(self._store, name)


@pytest.mark.parametrize(("lease_seconds", "most_claims"), [(300, 0), (10, 5)])
async def test_verify_renews_the_lease_only_when_it_runs_low_and_never_lets_it_lapse(
    world: World, lease_seconds: float, most_claims: int
) -> None:
    """Verify writes nothing outside the database, so its lease only has to stay alive:
    one renewal per token request was one database write per attempt for nothing."""
    app = world.directory.add_app("orders")
    world.manage(app)
    world.probe.refuse_first = 5  # propagation: eight attempts over some 13 s
    store = CountingClaims(world.store)
    deps = world.deps(owner=SLOW, lease_seconds=lease_seconds, store=store)
    plan = await plan_rotation(deps, app.app_id)
    started = await start_rotation(deps, plan, reason=RotationReason.MANUAL)
    left_at_attempts: list[float] = []

    def lease_left() -> None:
        current = world.store.get_rotation(started.id)
        assert current is not None and current.lease_expires_at is not None
        assert current.lease_owner == SLOW
        left_at_attempts.append((current.lease_expires_at - world.clock.now()).total_seconds())

    held = world.store.claim(started.id, SLOW, world.clock.now(), lease_seconds)
    assert held is not None
    created = await advance_once(deps, held)
    assert created.state is RotationState.STAGED
    world.probe.hook = lease_left
    store.claims = 0
    verified = await advance_once(deps, created)
    assert verified.state is RotationState.VERIFIED, verified.last_error
    assert world.probe.attempts >= 8
    # Every token request went out with at least half a lease to go...
    assert min(left_at_attempts) >= lease_seconds / 2
    # ...and the lease was renewed only when it ran low, not once per attempt.
    assert store.claims <= most_claims
