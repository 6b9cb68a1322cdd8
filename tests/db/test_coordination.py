"""Scan turns and the shared write budget, on SQLite and PostgreSQL: what replicas
sharing one database agree on (rotator.adapters.db.coordination_repo)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa

from rotator.adapters.db import SqlStore, make_engine
from rotator.adapters.db.coordination_repo import SqlCoordination
from rotator.domain.records import ScanStatus
from tests.support.records import T0

HOUR = 3600.0


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def replicas(db_url: str, clock: Clock) -> Iterator[list[SqlCoordination]]:
    """Three replicas' views of one database, each through an engine of its own."""
    engines = [make_engine(db_url) for _ in range(3)]
    yield [SqlCoordination(e, clock=clock) for e in engines]
    for e in engines:
        e.dispose()


def test_one_turn_per_interval_whoever_asks(replicas: list[SqlCoordination],
                                            clock: Clock) -> None:
    a, b, c = replicas
    turn = a.take_scan_turn("a", interval_seconds=HOUR, lease_seconds=60)
    assert turn is not None and turn.started_at == T0 and turn.abandoned_by is None
    # Held: nobody else scans, not even the holder a second time.
    assert b.take_scan_turn("b", interval_seconds=HOUR, lease_seconds=60) is None
    assert a.take_scan_turn("a", interval_seconds=HOUR, lease_seconds=60) is None
    clock.advance(30)
    assert a.renew_scan_turn("a", lease_seconds=60, scan_id="s1")
    assert not b.renew_scan_turn("b", lease_seconds=60)
    a.end_scan_turn("a", done=True)
    # Done: the interval is scanned; nobody scans again before it is over ...
    clock.advance(HOUR - 30 - 11)
    assert c.take_scan_turn("c", interval_seconds=HOUR, lease_seconds=60) is None
    # ... asked up to early_seconds before, the next turn is not put off a whole ask.
    clock.advance(1)
    later = c.take_scan_turn("c", interval_seconds=HOUR, lease_seconds=60, early_seconds=10)
    assert later is not None and later.abandoned_by is None
    assert b.take_scan_turn("b", interval_seconds=HOUR, lease_seconds=60) is None


def test_a_turn_whose_holder_stopped_renewing_is_taken_over(
    replicas: list[SqlCoordination], clock: Clock
) -> None:
    a, b, c = replicas
    assert a.take_scan_turn("a", interval_seconds=HOUR, lease_seconds=60)
    assert a.renew_scan_turn("a", lease_seconds=60, scan_id="scan-of-a")
    clock.advance(59)
    assert b.take_scan_turn("b", interval_seconds=HOUR, lease_seconds=60) is None
    clock.advance(2)  # a was killed: its lease lapsed, long before the interval is over
    turn = b.take_scan_turn("b", interval_seconds=HOUR, lease_seconds=60)
    assert turn is not None
    assert (turn.abandoned_by, turn.abandoned_scan_id) == ("a", "scan-of-a")
    assert c.take_scan_turn("c", interval_seconds=HOUR, lease_seconds=60) is None
    # The stalled holder, back, finds the turn gone and cannot hand it back for b.
    assert not a.renew_scan_turn("a", lease_seconds=60)
    a.end_scan_turn("a", done=True)
    assert c.take_scan_turn("c", interval_seconds=HOUR, lease_seconds=60) is None


def test_a_turn_given_back_part_way_is_taken_at_once(
    replicas: list[SqlCoordination], clock: Clock
) -> None:
    a, b, _ = replicas
    assert a.take_scan_turn("a", interval_seconds=HOUR, lease_seconds=60)
    a.end_scan_turn("a", done=False)  # stopped (SIGTERM) before the scan read every app
    clock.advance(1)
    turn = b.take_scan_turn("b", interval_seconds=HOUR, lease_seconds=60)
    assert turn is not None and turn.abandoned_by is None


def test_the_write_budget_is_one_for_every_replica(
    replicas: list[SqlCoordination], clock: Clock
) -> None:
    a, b, c = replicas
    rate, burst = 60.0, 3.0  # one write a second, three at once after a quiet spell
    waits = [r.reserve_write(rate_per_minute=rate, burst=burst) for r in (a, b, c, a, b, c)]
    # The burst is shared, and so is the queue behind it: each replica waits its turn.
    assert waits == pytest.approx([0, 0, 0, 1, 2, 3])
    clock.advance(10)  # quiet: nothing is owed, and no more than one burst is saved up
    waits = [r.reserve_write(rate_per_minute=rate, burst=burst) for r in (c, c, c, c)]
    assert waits == pytest.approx([0, 0, 0, 1])


def test_one_replica_alone_may_use_the_whole_budget(
    replicas: list[SqlCoordination], clock: Clock
) -> None:
    a = replicas[0]
    waits = []
    for _ in range(20):
        waits.append(a.reserve_write(rate_per_minute=120.0, burst=1.0))
        clock.advance(waits[-1])
    # Every half second, the whole rate, never less.
    assert waits == pytest.approx([0.0] + [0.5] * 19)


def test_replicas_reserving_at_once_never_get_more_than_the_budget(
    replicas: list[SqlCoordination], clock: Clock
) -> None:
    """Twelve threads over three replicas' engines, all asking at one instant: every
    reservation gets a slot of its own, so past the burst the writes are spaced at the
    rate, and no window of time holds more than the burst plus the rate's share of it."""
    rate, burst, per_thread = 600.0, 4.0, 8  # a write every 0.1 s
    spacing = 60.0 / rate
    waits: list[float] = []
    lock = threading.Lock()
    go = threading.Barrier(12)

    def reserve(budget: SqlCoordination) -> None:
        go.wait()
        mine = [budget.reserve_write(rate_per_minute=rate, burst=burst)
                for _ in range(per_thread)]
        with lock:
            waits.extend(mine)

    threads = [threading.Thread(target=reserve, args=(r,)) for r in replicas * 4]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    waits.sort()
    # Slot k is k spacings after the first; the burst lets the first ``burst`` go at once.
    assert waits == pytest.approx([max(0, k - (burst - 1)) * spacing
                                   for k in range(12 * per_thread)])
    for start in waits:
        for window in (0.0, 0.25, 1.0, 5.0):
            granted = sum(1 for w in waits if start <= w <= start + window + 1e-9)
            assert granted <= burst + window / spacing + 1e-9, (start, window, granted)


@pytest.mark.postgres
def test_postgresql_serves_concurrent_reservations_one_after_the_other(
    pg_migrated_url: str,
) -> None:
    """No test clock (the database's decides) and eight replicas' threads at once:
    the row's lock hands out eight different slots a spacing apart."""
    engine = make_engine(pg_migrated_url)
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM write_budgets"))
    budget = SqlCoordination(engine)
    assert budget.shared
    results: list[float] = []
    lock = threading.Lock()
    go = threading.Barrier(8)

    def reserve() -> None:
        go.wait()
        wait = budget.reserve_write(rate_per_minute=60.0, burst=1.0)  # one a second
        with lock:
            results.append(wait)

    threads = [threading.Thread(target=reserve) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    engine.dispose()
    # Slot k is k seconds after the first, less the moments the reservations took.
    for k, wait in enumerate(sorted(results)):
        assert k - 0.5 < wait <= k, sorted(results)


def test_the_last_finished_scan_skips_running_and_interrupted_ones(store: SqlStore) -> None:
    first = store.start_scan(T0)
    store.finish_scan(first, T0 + timedelta(minutes=1), status=ScanStatus.SUCCEEDED,
                      apps_seen=1, credentials_seen=1, errors=[])
    cut = store.start_scan(T0 + timedelta(hours=1))
    store.finish_scan(cut, T0 + timedelta(hours=1, minutes=1), status=ScanStatus.INTERRUPTED,
                      apps_seen=0, credentials_seen=0, errors=[])
    store.start_scan(T0 + timedelta(hours=2))  # running
    last = store.last_finished_scan()
    assert last is not None and last.id == first and last.status is ScanStatus.SUCCEEDED
