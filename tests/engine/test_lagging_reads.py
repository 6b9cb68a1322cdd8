"""Reads that lag writes: nothing is concluded from one read that misses a write."""

from __future__ import annotations

from rotator.domain.states import RotationState
from rotator.engine.driver import drive
from tests.support.invariants import assert_invariants
from tests.support.world import World, rotate


async def test_retirement_waits_for_a_read_that_shows_the_new_credential(world: World) -> None:
    app = world.directory.add_app("orders")
    old_key = app.credentials[0].key_id
    world.manage(app, grace_hours=24)
    promoted = await rotate(world, app, retire_now=False)
    assert promoted.state is RotationState.PROMOTED
    world.clock.advance(25 * 3600)
    world.directory.known_before = {old_key}
    world.directory.lagging_reads = 2  # the first reads do not show the new secret
    done = await drive(world.deps(), promoted.id)
    assert done.state is RotationState.COMPLETED, done.last_error
    assert old_key not in app.values
    assert_invariants(world, app)


async def test_rollback_removes_the_secret_it_created_though_no_read_shows_it(
    world: World
) -> None:
    app = world.directory.add_app("orders")
    world.directory.known_before = {app.credentials[0].key_id}
    world.manage(app)
    world.probe.refuse_first = 10_000  # verification never succeeds: roll back
    world.directory.lagging_reads = 10_000  # and no read ever shows the new secret
    result = await rotate(world, app)
    assert result.state is RotationState.FAILED
    assert len(app.credentials) == 1  # no orphan left behind
