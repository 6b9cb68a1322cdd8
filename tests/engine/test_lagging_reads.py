"""Reads that lag writes: nothing is concluded from one read that misses a write."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from rotator.domain.credentials import AppRegistration, CredentialKind
from rotator.domain.policies import Verdict
from rotator.domain.records import InventoryRow
from rotator.domain.rotation import Rotation, RotationReason
from rotator.domain.states import RotationState
from rotator.engine.driver import drive
from rotator.engine.plan import Candidate, due_candidates
from rotator.engine.reconcile import Reconciler
from rotator.engine.scan import scan
from rotator.ports import ScanItem
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


async def test_a_scan_and_a_read_that_predate_a_finished_rotation_start_no_second_one(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by three replicas on PostgreSQL: a replica's start-up scan, run just after
    another replica began a rotation, read the app from a directory replica that had not
    learned the new secret; once the rotation finished, that inventory (newer than the
    rotation) and a fresh read from an equally late replica still showed only the old,
    due secret — and a second rotation of the same app began. A view that still lists
    the credential a finished rotation removed predates that rotation: nobody plans
    from it."""
    app = world.directory.add_app("orders")
    world.manage(app)
    before = app.snapshot()
    done = await rotate(world, app)
    assert done.state is RotationState.COMPLETED and done.old_key_id not in app.values

    async def as_before_the_rotation(app_id: str) -> AppRegistration | None:
        return before if app_id == app.app_id else None

    async def listing_as_before() -> AsyncIterator[ScanItem]:
        yield ScanItem(app=before, raw_id=before.object_id)

    monkeypatch.setattr(world.directory, "get_application", as_before_the_rotation)
    monkeypatch.setattr(world.directory, "list_applications", listing_as_before)
    world.clock.advance(60)
    deps = world.deps()
    await scan(deps)
    reconciler = Reconciler(deps, max_concurrent=1)
    started = await reconciler.plan_due()
    assert started == []
    assert [r.id for r in world.store.list_rotations(app_id=app.app_id)] == [done.id]
    # The same view through the fresh read alone (an inventory that is right) is refused
    # as well: the decision is made on what Graph says now, and that may be late too.
    candidate = Candidate(app.app_id, CredentialKind.SECRET,
                          Verdict("expiring", "due in the test"))
    assert await reconciler._start(candidate) is None
    assert [r.id for r in world.store.list_rotations(app_id=app.app_id)] == [done.id]


def test_planning_skips_an_app_whose_inventory_lists_a_retired_credential(
    world: World
) -> None:
    app = world.directory.add_app("orders")
    policy = world.manage(app)
    now = world.clock.now()
    snapshot = app.snapshot()
    old_key = snapshot.credentials[0].key_id
    rows = [InventoryRow.from_credential(snapshot, c, managed=True, scan_run_id=1, seen_at=now)
            for c in snapshot.credentials]
    started = now - timedelta(minutes=5)
    finished = Rotation(id="r1", app_id=app.app_id, object_id=app.object_id,
                        kind=CredentialKind.SECRET, state=RotationState.COMPLETED,
                        reason=RotationReason.DUE, secret_name="orders-secret",
                        vault_url="https://vault.example.test", created_at=started,
                        updated_at=now, old_key_id=old_key, new_key_id="new-key")
    candidates, skipped = due_candidates(policy, rows, {app.app_id: finished},
                                         inventory_as_of=now, now=now)
    assert candidates == []
    [why] = skipped
    assert old_key in why.reason and "retired" in why.reason
