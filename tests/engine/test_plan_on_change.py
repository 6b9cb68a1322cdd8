"""Planning reads the inventory and the rotations again only when something it reads
changed: a scan, a rotation starting or ending, a backoff ending, or enough time passing.
And one read of the tenant's app management policies serves the rotations of a minute."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from rotator.domain.states import RotationState
from rotator.engine.driver import drive
from rotator.engine.reconcile import PLAN_AT_LEAST_EVERY, Reconciler, planning_order
from rotator.engine.scan import scan
from tests.support.world import World


class CountingReads:
    """Counts what planning reads from the store, and passes every call on."""

    def __init__(self, store: Any) -> None:
        self._store = store
        self.inventory_reads = 0
        self.latest_reads = 0

    def inventory(self, **kwargs: Any) -> Any:
        self.inventory_reads += 1
        return self._store.inventory(**kwargs)

    def latest_rotations(self, app_ids: Any) -> Any:
        self.latest_reads += 1
        return self._store.latest_rotations(app_ids)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


async def settle(reconciler: Reconciler) -> None:
    """Let the rotations planning handed to the reconciler run to where they stop."""
    # Planning hands rotations over with a task of its own, and the store answers from a
    # worker thread: fill here rather than count on the loop's turns.
    for _ in range(3):
        await asyncio.sleep(0)
        await reconciler.fill()
        await asyncio.gather(*reconciler.in_flight.values())


async def test_a_pass_with_nothing_new_reads_neither_inventory_nor_rotations(
    world: World
) -> None:
    due = world.directory.add_app("orders", secret_days_left=5)
    fresh = world.directory.add_app("billing", secret_days_left=300)
    world.manage(due, fresh)
    reads = CountingReads(world.store)
    deps = world.deps(store=reads)
    await scan(deps)
    reconciler = Reconciler(deps, max_concurrent=2)

    started = await reconciler.plan_due()
    assert [r.app_id for r in started] == [due.app_id]
    # Only the app without a rotation had its inventory read.
    assert (reads.latest_reads, reads.inventory_reads) == (1, 1)

    # The rotation that started changed the rotations: one more plan, no inventory read
    # (every app left either waits for its rotation or is not due).
    assert await reconciler.plan_due() == []
    assert reads.latest_reads == 2

    await settle(reconciler)  # planning handed it on to be driven: promoted, in grace
    for _ in range(3):  # nothing changed: nothing read
        assert await reconciler.plan_due() == []
    assert reads.latest_reads == 2

    done = await drive(deps, started[0].id, retire_now=True)
    assert done.state is RotationState.COMPLETED
    assert await reconciler.plan_due() == []  # a rotation ended: planned again
    assert reads.latest_reads == 3
    await scan(deps)
    assert await reconciler.plan_due() == []  # a new scan: planned again
    assert reads.latest_reads == 4
    world.clock.advance(PLAN_AT_LEAST_EVERY.total_seconds())
    assert await reconciler.plan_due() == []  # time alone: planned again
    assert reads.latest_reads == 5


async def test_an_app_is_planned_again_when_its_backoff_ends(world: World) -> None:
    app = world.directory.add_app("orders", secret_days_left=5)
    world.manage(app)
    deps = world.deps()
    await scan(deps)
    reconciler = Reconciler(deps, max_concurrent=1)
    world.probe.refuse_first = 10_000  # verification never succeeds: it fails
    [first] = await reconciler.plan_due()
    await settle(reconciler)
    failed = world.store.get_rotation(first.id)
    assert failed is not None
    assert failed.state is RotationState.FAILED and failed.next_attempt_at is not None
    world.probe.refuse_first = 0
    await scan(deps)
    assert await reconciler.plan_due() == []  # backing off
    assert await reconciler.plan_due() == []
    world.clock.advance((failed.next_attempt_at - world.clock.now()).total_seconds() + 1)
    [again] = await reconciler.plan_due()
    assert again.app_id == app.app_id and again.id != first.id


async def test_one_policy_read_serves_many_rotations(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    apps = [world.directory.add_app(f"app{i}", secret_days_left=5) for i in range(4)]
    world.manage(*apps)
    deps = world.deps()
    await scan(deps)
    reconciler = Reconciler(deps, max_concurrent=4)
    planned = await reconciler.plan_due()
    await settle(reconciler)
    for rotation in planned:
        assert (await drive(deps, rotation.id, retire_now=True)).state is RotationState.COMPLETED
    calls = world.directory.calls
    assert calls.count("list_credential_policies") == 1
    assert calls.count("get_credential_policy") == 0


class StaleLatest(CountingReads):
    """A replica that read the latest rotations just before another replica started
    its rotations: planning then sees the apps as due."""

    def latest_rotations(self, app_ids: Any) -> Any:
        self.latest_reads += 1
        return {}


async def test_a_replica_reads_nothing_from_graph_for_an_app_another_has_started(
    world: World
) -> None:
    apps = [world.directory.add_app(f"app{i}", secret_days_left=5) for i in range(3)]
    world.manage(*apps)
    deps = world.deps()
    await scan(deps)
    first = Reconciler(deps, max_concurrent=3)
    assert len(await first.plan_due()) == 3
    await settle(first)
    before = world.directory.calls.count("get")
    # The second replica planned from a view taken before the first one's rotations
    # began: the database already says they run, so Graph is not asked about them.
    second = Reconciler(world.deps(store=StaleLatest(world.store)), max_concurrent=3)
    assert await second.plan_due() == []
    await settle(second)
    assert world.directory.calls.count("get") == before
    assert {r.app_id for r in world.store.list_rotations()} == {a.app_id for a in apps}
    assert len(world.store.list_rotations()) == 3


def test_replicas_start_planning_at_different_points_of_the_list() -> None:
    # Replicas see each scan at about the same moment and would otherwise plan the same
    # apps in the same order, each reading them from Graph before one of them wins.
    import random

    names = [f"app{i:02d}" for i in range(12)]
    assert planning_order(names, shared=False, rng=random.Random(1)) == names
    firsts = set()
    for seed in range(8):
        order = planning_order(names, shared=True, rng=random.Random(seed))
        start = names.index(order[0])
        assert order == names[start:] + names[:start]  # the same list, cycled
        firsts.add(order[0])
    assert len(firsts) > 1, firsts
    assert planning_order([], shared=True, rng=random.Random(1)) == []
