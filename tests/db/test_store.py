"""The store against SQLite and PostgreSQL: every test runs on both."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import sqlalchemy as sa

from rotator.adapters.db import SecretInStore, SqlStore, make_engine
from rotator.adapters.db.models import MAX_SCAN_ERRORS
from rotator.domain.credentials import AppRegistration, Credential, CredentialKind
from rotator.domain.records import AuditNote, AuditOutcome, InventoryRow, ScanStatus
from rotator.domain.rotation import Registration
from rotator.domain.secret_value import SecretValue
from rotator.domain.states import ACTIVE_STATES, IllegalTransition, RotationState
from rotator.ports import RotationConflict, StaleRotation, StoreError
from tests.support.records import APP_A, APP_B, APP_C, T0, inv, make_rotation

# ----------------------------------------------------------------- basics


def test_ping(store: SqlStore) -> None:
    store.ping()


# ----------------------------------------------------------------- scans


def test_failed_or_partial_scan_never_counts_as_successful(store: SqlStore) -> None:
    ok = store.start_scan(T0)
    store.finish_scan(
        ok,
        T0 + timedelta(minutes=1),
        status="succeeded",
        apps_seen=2,
        credentials_seen=3,
        errors=[],
    )
    partial = store.start_scan(T0 + timedelta(hours=1))
    store.finish_scan(
        partial,
        T0 + timedelta(hours=1, minutes=1),
        status=ScanStatus.PARTIAL,
        apps_seen=1,
        credentials_seen=1,
        errors=[("obj-1", "could not parse")],
    )
    failed = store.start_scan(T0 + timedelta(hours=2))
    result = store.finish_scan(
        failed,
        T0 + timedelta(hours=2, minutes=1),
        status="failed",
        apps_seen=0,
        credentials_seen=0,
        errors=[],
        error="Graph said 403 Authorization_RequestDenied",
    )

    assert result.status is ScanStatus.FAILED
    assert not result.clean
    assert result.error_count == 1
    last = store.last_scan()
    assert last is not None and last.id == failed and last.error is not None
    good = store.last_successful_scan()
    assert good is not None and good.id == ok and good.clean
    assert good.apps_seen == 2 and good.credentials_seen == 3
    got_partial = store.get_scan(partial)
    assert got_partial is not None and not got_partial.clean
    assert got_partial.errors[0].raw_id == "obj-1"


def test_a_scan_with_errors_cannot_be_recorded_as_succeeded(store: SqlStore) -> None:
    scan = store.start_scan(T0)
    with pytest.raises(ValueError, match="partial or failed"):
        store.finish_scan(
            scan,
            T0,
            status="succeeded",
            apps_seen=1,
            credentials_seen=0,
            errors=[(None, "boom")],
        )
    running = store.last_scan()
    assert running is not None and running.status is ScanStatus.RUNNING


def test_scan_errors_are_capped_but_counted(store: SqlStore) -> None:
    scan = store.start_scan(T0)
    errors = [(f"obj-{i}", f"bad entry {i}") for i in range(MAX_SCAN_ERRORS + 50)]
    result = store.finish_scan(
        scan, T0, status="partial", apps_seen=10, credentials_seen=0, errors=errors
    )
    assert result.error_count == MAX_SCAN_ERRORS + 50
    assert len(result.errors) == MAX_SCAN_ERRORS


def test_finishing_a_scan_twice_is_refused(store: SqlStore) -> None:
    scan = store.start_scan(T0)
    store.finish_scan(scan, T0, status="succeeded", apps_seen=0, credentials_seen=0, errors=[])
    with pytest.raises(StoreError, match="already finished"):
        store.finish_scan(scan, T0, status="failed", apps_seen=0, credentials_seen=0, errors=[])
    with pytest.raises(StoreError, match="unknown"):
        store.finish_scan("nope", T0, status="failed", apps_seen=0, credentials_seen=0, errors=[])


# ----------------------------------------------------------------- inventory


def test_inventory_upsert_refreshes_rows_and_sorts_by_expiry(store: SqlStore) -> None:
    scan = store.start_scan(T0)
    store.record_inventory(
        scan,
        [
            inv(APP_A, "k1", end_in_days=90),
            inv(APP_A, "k2", end_in_days=None),
            inv(APP_B, "k1", end_in_days=5),
        ],
        T0,
    )
    # The same key seen again (in the same or a later batch) updates in place.
    store.record_inventory(scan, [inv(APP_A, "k1", end_in_days=10, hint="xyz")], T0)

    rows = store.inventory()
    assert sorted(store.each_credential(), key=lambda r: (r.app_id, r.key_id)) == sorted(
        rows, key=lambda r: (r.app_id, r.key_id))
    assert [(r.app_id, r.key_id) for r in rows] == [
        (APP_B, "k1"),
        (APP_A, "k1"),
        (APP_A, "k2"),
    ]
    assert rows[1].hint == "xyz"
    assert rows[1].end_at == T0 + timedelta(days=10)
    assert rows[1].scan_run_id == scan and rows[1].seen_at == T0

    soon = store.inventory(within_days=7, now=T0)
    assert [(r.app_id, r.key_id) for r in soon] == [(APP_B, "k1")]
    assert [r.key_id for r in store.inventory(app_id=APP_A.upper())] == ["k1", "k2"]
    with pytest.raises(ValueError):
        store.inventory(within_days=7)


def test_duplicate_keys_in_one_batch_keep_the_last(store: SqlStore) -> None:
    scan = store.start_scan(T0)
    written = store.record_inventory(
        scan, [inv(APP_A, "k1", hint="one"), inv(APP_A, "k1", hint="two")], T0
    )
    assert written == 1
    assert [r.hint for r in store.inventory()] == ["two"]


def test_inventory_row_round_trips_domain_credentials(store: SqlStore) -> None:
    cert = Credential(
        key_id="c1",
        kind=CredentialKind.CERTIFICATE,
        display_name="cert",
        start=T0 - timedelta(days=1),
        end=T0 + timedelta(days=365),
        thumbprint="AB" * 20,
    )
    app = AppRegistration(
        object_id="obj-1", app_id=APP_A, display_name="Orders", credentials=(cert,)
    )
    scan = store.start_scan(T0)
    store.record_inventory(scan, [InventoryRow.from_credential(app, cert, managed=True)], T0)
    (row,) = store.inventory()
    assert row.managed is True
    assert row.kind is CredentialKind.CERTIFICATE
    assert row.to_credential() == cert


def _scan(store: SqlStore, at: datetime, rows: list[InventoryRow], status: str) -> None:
    scan = store.start_scan(at)
    store.record_inventory(scan, rows, at)
    errors = [] if status == "succeeded" else [("obj-x", "could not read")]
    store.finish_scan(
        scan,
        at,
        status=status,
        apps_seen=len({r.app_id for r in rows}),
        credentials_seen=len(rows),
        errors=errors,
    )


def test_successful_scan_forgets_what_it_did_not_see(store: SqlStore) -> None:
    _scan(store, T0, [inv(APP_A, "k1"), inv(APP_A, "k2"), inv(APP_B, "k1")], "succeeded")
    later = T0 + timedelta(hours=1)
    _scan(store, later, [inv(APP_A, "k2", now=later)], "succeeded")
    assert [(r.app_id, r.key_id) for r in store.inventory()] == [(APP_A, "k2")]


def test_partial_scan_does_not_forget_apps_it_failed_to_read(store: SqlStore) -> None:
    _scan(
        store,
        T0,
        [inv(APP_A, "k1"), inv(APP_A, "k2"), inv(APP_B, "k1"), inv(APP_C, "k1")],
        "succeeded",
    )
    later = T0 + timedelta(hours=1)
    # APP_A was read (k1 is gone), APP_B and APP_C could not be read this time.
    _scan(store, later, [inv(APP_A, "k2", now=later)], "partial")
    assert sorted((r.app_id, r.key_id) for r in store.inventory()) == [
        (APP_A, "k2"),
        (APP_B, "k1"),
        (APP_C, "k1"),
    ]


def test_failed_scan_forgets_nothing(store: SqlStore) -> None:
    _scan(store, T0, [inv(APP_A, "k1"), inv(APP_B, "k1")], "succeeded")
    _scan(store, T0 + timedelta(hours=1), [], "failed")
    assert len(store.inventory()) == 2


@pytest.mark.slow
def test_quarter_million_inventory_rows(store: SqlStore) -> None:
    n = 250_000
    end = T0 + timedelta(days=30)

    def rows() -> Iterator[InventoryRow]:
        for i in range(n):
            yield InventoryRow(
                app_id=f"{i // 5:08x}-0000-0000-0000-000000000000",
                key_id=f"{i:08x}-1111-1111-1111-111111111111",
                object_id=f"{i // 5:08x}-2222-2222-2222-222222222222",
                app_display_name=f"app {i // 5}",
                kind=CredentialKind.SECRET,
                display_name=None,
                start_at=T0,
                end_at=end + timedelta(minutes=i),
                hint="abc",
            )

    scan = store.start_scan(T0)
    assert store.record_inventory(scan, rows(), T0) == n
    assert store.record_inventory(scan, rows(), T0) == n  # every row an update
    store.finish_scan(scan, T0, status="succeeded", apps_seen=n // 5, credentials_seen=n, errors=[])
    with store.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM credentials")).scalar_one() == n
    first = store.inventory(within_days=30.0001, now=T0)
    assert len(first) == 1 and first[0].end_at == end
    # Read a batch at a time, every row once.
    assert sum(1 for _ in store.each_credential()) == n


# ----------------------------------------------------------------- timestamps


def test_datetimes_come_back_aware_utc(store: SqlStore) -> None:
    cet = timezone(timedelta(hours=1))
    at = datetime(2026, 11, 26, 13, 30, 15, 123456, tzinfo=cet)
    r = store.create_rotation(make_rotation(APP_A, now=at, next_attempt_at=at + timedelta(hours=1)))
    got = store.get_rotation(r.id)
    assert got is not None
    for value in (got.created_at, got.updated_at, got.next_attempt_at):
        assert value is not None
        assert value.tzinfo is not None and value.utcoffset() == timedelta(0)
    assert got.created_at == at
    assert got.created_at.hour == 12 and got.created_at.microsecond == 123456


def test_naive_datetimes_are_refused(store: SqlStore) -> None:
    with pytest.raises((ValueError, sa.exc.StatementError), match="naive"):
        store.start_scan(datetime(2026, 1, 1))


# ----------------------------------------------------------------- rotations


def test_rotation_round_trips_every_field(store: SqlStore) -> None:
    r = make_rotation(
        APP_A,
        state=RotationState.STAGED,
        old_key_id="old",
        new_key_id="new",
        new_key_end_at=T0 + timedelta(days=180),
        staging_version="a" * 32,
        consumer_version=None,
        attempts=2,
        last_error="AADSTS7000215",
        next_attempt_at=T0 + timedelta(minutes=5),
        retire_after=T0 + timedelta(days=1),
        retire_now=True,
        thumbprint="AB12CD",
        registered_by=Registration.PATCH,
        verify_seconds=12.5,
        verify_attempts=4,
    )
    assert store.create_rotation(r) == r
    assert store.get_rotation(r.id) == r
    assert store.get_rotation("missing") is None


def test_second_active_rotation_for_an_app_is_a_conflict(store: SqlStore) -> None:
    first = store.create_rotation(make_rotation(APP_A))
    with pytest.raises(RotationConflict) as info:
        store.create_rotation(make_rotation(APP_A, state=RotationState.CREATING))
    assert info.value.app_id == APP_A
    assert info.value.active_rotation_id == first.id
    # Another spelling of the same GUID is the same app.
    with pytest.raises(RotationConflict):
        store.create_rotation(make_rotation(APP_A.upper()))
    # Other apps are unaffected.
    store.create_rotation(make_rotation(APP_B))
    assert store.active_rotation(APP_A) == first


@pytest.mark.parametrize("done", [RotationState.COMPLETED, RotationState.FAILED])
def test_finished_rotations_do_not_block_a_new_one(store: SqlStore, done: RotationState) -> None:
    store.create_rotation(make_rotation(APP_A, state=done, finished_at=T0))
    store.create_rotation(make_rotation(APP_A, state=done, finished_at=T0))
    new = store.create_rotation(make_rotation(APP_A))
    assert store.active_rotation(APP_A) == new
    assert len(store.list_rotations(app_id=APP_A)) == 3


def test_every_active_state_holds_the_app(store: SqlStore) -> None:
    for i, state in enumerate(sorted(ACTIVE_STATES)):
        app = f"{i:08d}-0000-0000-0000-000000000000"
        store.create_rotation(make_rotation(app, state=state))
        with pytest.raises(RotationConflict):
            store.create_rotation(make_rotation(app))


def test_concurrent_creates_for_one_app_admit_exactly_one(db_url: str) -> None:
    stores = [SqlStore(make_engine(db_url)) for _ in range(4)]
    barrier = threading.Barrier(len(stores))
    outcomes: list[str] = []
    lock = threading.Lock()

    def worker(s: SqlStore) -> None:
        barrier.wait()
        try:
            s.create_rotation(make_rotation(APP_A))
            result = "created"
        except RotationConflict:
            result = "conflict"
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=worker, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for s in stores:
        s.close()
    assert sorted(outcomes) == ["conflict"] * 3 + ["created"]


def test_save_rotation_is_compare_and_set(store: SqlStore) -> None:
    r = store.create_rotation(make_rotation(APP_A))
    now = T0 + timedelta(minutes=1)
    creating = store.save_rotation(
        r.advance(RotationState.CREATING, now), expected_state=RotationState.PENDING
    )
    assert creating.state is RotationState.CREATING and creating.updated_at == now

    # A second writer that read the row before the first write lost the race.
    with pytest.raises(StaleRotation) as info:
        store.save_rotation(
            r.advance(RotationState.FAILED, now), expected_state=RotationState.PENDING
        )
    assert info.value.actual_state is RotationState.CREATING

    # Same-state updates (attempt counters, errors) are allowed.
    bumped = store.save_rotation(
        creating.with_changes(now, attempts=1, last_error="timeout"),
        expected_state=RotationState.CREATING,
    )
    assert bumped.attempts == 1 and bumped.last_error == "timeout"

    with pytest.raises(IllegalTransition):
        store.save_rotation(
            bumped.with_changes(now, state=RotationState.COMPLETED),
            expected_state=RotationState.CREATING,
        )
    with pytest.raises(StaleRotation, match="does not exist"):
        store.save_rotation(make_rotation(APP_C), expected_state=RotationState.PENDING)


def test_a_state_change_and_its_audit_event_commit_together(store: SqlStore) -> None:
    r = store.create_rotation(make_rotation(APP_A),
                              audit=AuditNote("plan", AuditOutcome.OK, "planned"))
    now = T0 + timedelta(minutes=1)
    store.save_rotation(r.advance(RotationState.CREATING, now),
                        expected_state=RotationState.PENDING,
                        audit=AuditNote("create", AuditOutcome.INFO, "creating", {"n": 1}))
    # The losing writer's event must not appear either: it describes a change never made.
    with pytest.raises(StaleRotation):
        store.save_rotation(r.advance(RotationState.FAILED, now),
                            expected_state=RotationState.PENDING,
                            audit=AuditNote("create", AuditOutcome.ERROR, "lost the race"))
    events = store.history(rotation_id=r.id)
    assert [(e.step, e.message, e.at) for e in events] == [
        ("plan", "planned", r.updated_at), ("create", "creating", now)]
    assert events[1].app_id == r.app_id and events[1].details == {"n": 1}
    with pytest.raises(SecretInStore):
        store.save_rotation(r.advance(RotationState.CREATING, now),
                            expected_state=RotationState.CREATING,
                            audit=AuditNote("create", AuditOutcome.OK, "x",
                                            {"v": SecretValue("s3cr3t")}))


def test_save_rotation_respects_the_lease(store: SqlStore) -> None:
    r = store.create_rotation(make_rotation(APP_A))
    mine = store.claim(r.id, "worker-1", T0, lease_seconds=60)
    assert mine is not None and mine.lease_owner == "worker-1"

    # Someone without the lease (or with another one) cannot write.
    with pytest.raises(StaleRotation, match="lease"):
        store.save_rotation(
            r.advance(RotationState.CREATING, T0), expected_state=RotationState.PENDING
        )
    with pytest.raises(StaleRotation):
        store.save_rotation(
            r.advance(RotationState.CREATING, T0, lease_owner="worker-2"),
            expected_state=RotationState.PENDING,
        )
    saved = store.save_rotation(
        mine.advance(RotationState.CREATING, T0), expected_state=RotationState.PENDING
    )
    assert saved.lease_owner == "worker-1" and saved.state is RotationState.CREATING


def test_only_one_of_two_owners_gets_the_lease(store: SqlStore) -> None:
    r = store.create_rotation(make_rotation(APP_A))
    a = store.claim(r.id, "a", T0, lease_seconds=60)
    b = store.claim(r.id, "b", T0 + timedelta(seconds=1), lease_seconds=60)
    assert a is not None and b is None
    # The holder may renew.
    renewed = store.claim(r.id, "a", T0 + timedelta(seconds=30), lease_seconds=60)
    assert renewed is not None
    assert renewed.lease_expires_at == T0 + timedelta(seconds=90)
    # Once it expires, another owner takes it over.
    taken = store.claim(r.id, "b", T0 + timedelta(seconds=91), lease_seconds=60)
    assert taken is not None and taken.lease_owner == "b"
    assert store.claim(r.id, "a", T0 + timedelta(seconds=92), lease_seconds=60) is None


def test_release_only_by_the_holder(store: SqlStore) -> None:
    r = store.create_rotation(make_rotation(APP_A))
    assert store.claim(r.id, "a", T0, lease_seconds=60) is not None
    assert store.release(r.id, "b") is False
    assert store.release(r.id, "a") is True
    got = store.get_rotation(r.id)
    assert got is not None and got.lease_owner is None and got.lease_expires_at is None
    assert store.claim(r.id, "b", T0, lease_seconds=60) is not None


def test_finished_rotations_cannot_be_claimed(store: SqlStore) -> None:
    r = store.create_rotation(make_rotation(APP_A, state=RotationState.COMPLETED))
    assert store.claim(r.id, "a", T0, lease_seconds=60) is None
    assert store.claim("missing", "a", T0, lease_seconds=60) is None


def test_concurrent_claims_have_exactly_one_winner(db_url: str) -> None:
    setup = SqlStore(make_engine(db_url))
    ids = [
        setup.create_rotation(make_rotation(f"{i:08d}-0000-0000-0000-000000000000")).id
        for i in range(10)
    ]
    setup.close()
    owners = [f"replica-{i}" for i in range(4)]
    stores = {o: SqlStore(make_engine(db_url)) for o in owners}
    barrier = threading.Barrier(len(owners))
    won: dict[str, list[str]] = {rid: [] for rid in ids}
    lock = threading.Lock()

    def worker(owner: str) -> None:
        barrier.wait()
        for rid in ids:
            if stores[owner].claim(rid, owner, T0, lease_seconds=60) is not None:
                with lock:
                    won[rid].append(owner)

    threads = [threading.Thread(target=worker, args=(o,)) for o in owners]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for s in stores.values():
        s.close()
    assert all(len(winners) == 1 for winners in won.values()), won


def test_due_rotations(store: SqlStore) -> None:
    now = T0 + timedelta(hours=1)
    due_null = store.create_rotation(make_rotation(APP_A))
    due_past = store.create_rotation(
        make_rotation(APP_B, state=RotationState.STAGED, next_attempt_at=now - timedelta(minutes=1))
    )
    store.create_rotation(
        make_rotation(APP_C, state=RotationState.STAGED, next_attempt_at=now + timedelta(minutes=1))
    )
    leased = store.create_rotation(make_rotation("44444444-4444-4444-4444-444444444444"))
    store.claim(leased.id, "other", now, lease_seconds=60)
    expired = store.create_rotation(make_rotation("55555555-5555-5555-5555-555555555555"))
    store.claim(expired.id, "crashed", now - timedelta(minutes=5), lease_seconds=60)
    store.create_rotation(
        make_rotation("66666666-6666-6666-6666-666666666666", state=RotationState.COMPLETED)
    )

    due = store.due_rotations(now, limit=10)
    assert {r.id for r in due} == {due_null.id, due_past.id, expired.id}
    assert len(store.due_rotations(now, limit=2)) == 2
    # Pages in the same order make up the whole list.
    pages = store.due_rotations(now, limit=2) + store.due_rotations(now, limit=2, offset=2)
    assert [r.id for r in pages] == [r.id for r in due]
    # Never-tried rotations first, then by when they became due.
    assert [r.next_attempt_at is None for r in due] == [True, True, False]
    later = store.due_rotations(now + timedelta(minutes=2), limit=10)
    assert [r.app_id for r in later[-2:]] == [APP_B, APP_C]


def test_list_rotations_filters(store: SqlStore) -> None:
    a1 = store.create_rotation(make_rotation(APP_A, state=RotationState.FAILED, now=T0))
    a2 = store.create_rotation(make_rotation(APP_A, now=T0 + timedelta(hours=1)))
    b1 = store.create_rotation(make_rotation(APP_B, state=RotationState.COMPLETED, now=T0))
    assert [r.id for r in store.list_rotations(app_id=APP_A)] == [a2.id, a1.id]
    assert {r.id for r in store.list_rotations(states=ACTIVE_STATES)} == {a2.id}
    assert {
        r.id for r in store.list_rotations(states=[RotationState.FAILED, RotationState.COMPLETED])
    } == {a1.id, b1.id}
    assert len(store.list_rotations(limit=1)) == 1


# ----------------------------------------------------------------- audit


def test_history_is_oldest_first_in_write_order(store: SqlStore) -> None:
    r = store.create_rotation(make_rotation(APP_A))
    # A clock that jumped back must not reorder the record.
    times = [T0, T0 + timedelta(seconds=5), T0 + timedelta(seconds=2)]
    for i, at in enumerate(times):
        store.append_audit(
            at,
            f"step-{i}",
            AuditOutcome.OK,
            f"message {i}",
            rotation_id=r.id,
            app_id=APP_A,
            details={"i": i, "at": at, "state": RotationState.PENDING},
        )
    store.append_audit(T0, "scan", AuditOutcome.INFO, "unrelated", app_id=APP_B)

    events = store.history(rotation_id=r.id)
    assert [e.step for e in events] == ["step-0", "step-1", "step-2"]
    assert events[0].details == {"i": 0, "at": T0.isoformat(), "state": "pending"}
    assert events[2].at == times[2]
    assert [e.step for e in store.history(app_id=APP_A.upper())] == ["step-0", "step-1", "step-2"]
    # The limit keeps the newest events, still returned oldest first.
    assert [e.step for e in store.history(limit=2)] == ["step-2", "scan"]
    assert store.history()[-1].outcome is AuditOutcome.INFO


# ----------------------------------------------------------------- secret hygiene

_SECRET = SecretValue("s3cr3t-value-that-must-not-be-stored")


def _all_text(store: SqlStore) -> str:
    dump: list[Any] = []
    with store.engine.connect() as conn:
        for table in ("scan_runs", "credentials", "rotations", "audit_events"):
            dump.extend(conn.execute(sa.text(f"SELECT * FROM {table}")).all())
    return repr(dump)


@pytest.mark.parametrize(
    "details",
    [
        {"secret": _SECRET},
        {"nested": {"list": [1, _SECRET]}},
        {"tuple": ("a", (_SECRET,))},
    ],
)
def test_secret_values_in_audit_details_are_refused(
    store: SqlStore, details: dict[str, Any]
) -> None:
    with pytest.raises(SecretInStore):
        store.append_audit(T0, "stage", AuditOutcome.OK, "staged", details=details)
    assert store.history() == []


def test_secret_values_in_rotations_are_refused(store: SqlStore) -> None:
    with pytest.raises(SecretInStore):
        store.create_rotation(make_rotation(APP_A, thumbprint=_SECRET))
    with pytest.raises(SecretInStore):
        store.create_rotation(make_rotation(APP_A, last_error=_SECRET))
    r = store.create_rotation(make_rotation(APP_A))
    with pytest.raises(SecretInStore):
        store.save_rotation(
            r.with_changes(T0, thumbprint=_SECRET), expected_state=RotationState.PENDING
        )
    assert "s3cr3t" not in _all_text(store)


def test_secret_values_in_inventory_are_refused(store: SqlStore) -> None:
    scan = store.start_scan(T0)
    with pytest.raises(SecretInStore):
        store.record_inventory(scan, [inv(APP_A, "k1", hint=_SECRET)], T0)
    with pytest.raises(SecretInStore):
        store.finish_scan(
            scan,
            T0,
            status="partial",
            apps_seen=0,
            credentials_seen=0,
            errors=[(None, _SECRET)],  # type: ignore[list-item]
        )
    assert "s3cr3t" not in _all_text(store)
