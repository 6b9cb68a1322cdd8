"""Scan turns and the shared Graph write budget: :class:`rotator.ports.Coordination`.

Both are one row each, read and changed in one short transaction under the row's
lock (``SELECT ... FOR UPDATE`` on PostgreSQL; SQLite's writer lock), so two
replicas asking at once are served one after the other. A write reservation on
PostgreSQL, asked for before every Graph write, is a single ``UPDATE ... RETURNING``
instead, so the lock lasts only while the server changes the row.

Why rows rather than PostgreSQL advisory locks: a session advisory lock lives on one
connection, which a pooled engine (and PgBouncer in transaction mode) does not pin
to the scan; it says who scans *now*, not whether this interval was already scanned;
and SQLite has none. A lease row answers all three, and the same code runs on both.

Time: on PostgreSQL every decision uses the database server's clock
(``clock_timestamp()``), so replicas whose clocks disagree never hand a turn over
early or draw more than the budget; SQLite serves one process, whose clock it uses.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine

from rotator.adapters.db.models import Base, ScanTurnModel, UTCDateTime, WriteBudgetModel
from rotator.ports import ScanTurn, StoreError

SCAN_TURN = "scan"
GRAPH_BUDGET = "graph"
LONG_AGO = datetime(1970, 1, 1, tzinfo=UTC)


class SqlCoordination:
    def __init__(self, engine: Engine, *, clock: Callable[[], datetime] | None = None) -> None:
        # ``clock`` is for tests that move time by hand; left out, the database's is used.
        self._engine = engine
        self._clock = clock

    @property
    def shared(self) -> bool:
        return self._engine.dialect.name != "sqlite"

    def _now(self, conn: sa.Connection) -> datetime:
        if self._clock is not None:
            return self._clock()
        if conn.dialect.name == "postgresql":
            now: datetime = conn.execute(sa.select(sa.func.clock_timestamp())).scalar_one()
            return now.astimezone(UTC)
        return datetime.now(UTC)

    def _locked_row(self, conn: sa.Connection, model: type[Base], name: str,
                    **initial: object) -> sa.Row[Any]:
        """The named row under its lock, made first if it is not there yet."""
        table = cast(sa.Table, model.__table__)
        if conn.dialect.name == "sqlite":
            # A write first takes SQLite's writer lock (waiting out the busy timeout),
            # so no other writer slips in between this read and the write after it.
            conn.execute(sa.update(table).where(table.c.name == name)
                         .values(name=table.c.name))
        query = sa.select(table).where(table.c.name == name).with_for_update()
        row = conn.execute(query).first()
        if row is None:
            insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
            conn.execute(insert(table).values(name=name, **initial).on_conflict_do_nothing())
            row = conn.execute(query).first()
        if row is None:
            raise StoreError(f"could not make the {table.name} row {name!r}")
        return row

    def _turn(self, conn: sa.Connection) -> ScanTurnModel:
        return ScanTurnModel(**self._locked_row(conn, ScanTurnModel, SCAN_TURN)._asdict())

    # ------------------------------------------------------------- scan turns

    def take_scan_turn(
        self, owner: str, *, interval_seconds: float, lease_seconds: float,
        early_seconds: float = 0.0,
    ) -> ScanTurn | None:
        if lease_seconds <= 0 or interval_seconds <= 0:
            raise ValueError("interval_seconds and lease_seconds must be positive")
        with self._engine.begin() as conn:
            turn = self._turn(conn)
            now = self._now(conn)
            if turn.owner is not None and turn.expires_at is not None and turn.expires_at > now:
                return None  # someone (maybe this process) is scanning
            # Held, but no longer renewed: its holder died or stalled mid-scan.
            abandoned = turn.owner is not None
            due_at = (turn.started_at + timedelta(seconds=interval_seconds - early_seconds)
                      if turn.started_at is not None else None)
            if not abandoned and due_at is not None and due_at > now:
                return None  # this interval was scanned already
            conn.execute(
                sa.update(ScanTurnModel).where(ScanTurnModel.name == SCAN_TURN).values(
                    owner=owner, expires_at=now + timedelta(seconds=lease_seconds),
                    started_at=now, scan_id=None,
                )
            )
        return ScanTurn(
            started_at=now,
            abandoned_by=turn.owner if abandoned else None,
            abandoned_scan_id=turn.scan_id if abandoned else None,
        )

    def renew_scan_turn(self, owner: str, *, lease_seconds: float,
                        scan_id: str | None = None) -> bool:
        with self._engine.begin() as conn:
            turn = self._turn(conn)
            if turn.owner != owner:
                return False
            values: dict[str, object] = {
                "expires_at": self._now(conn) + timedelta(seconds=lease_seconds)}
            if scan_id is not None:
                values["scan_id"] = scan_id
            conn.execute(sa.update(ScanTurnModel)
                         .where(ScanTurnModel.name == SCAN_TURN).values(**values))
        return True

    def end_scan_turn(self, owner: str, *, done: bool) -> None:
        values: dict[str, object] = {"owner": None, "expires_at": None, "scan_id": None}
        if not done:
            values["started_at"] = None
        with self._engine.begin() as conn:
            conn.execute(
                sa.update(ScanTurnModel)
                .where(ScanTurnModel.name == SCAN_TURN, ScanTurnModel.owner == owner)
                .values(**values)
            )

    # ------------------------------------------------------------- write budget

    def reserve_write(self, *, rate_per_minute: float, burst: float) -> float:
        """GCRA: each reservation moves the budget's next slot one spacing (60 / rate s)
        later; a caller waits until its slot is no more than ``burst`` spacings ahead.

        A replica that dies holding a reservation leaves at most that one slot unused:
        the budget is never overspent, only briefly underused.
        """
        if rate_per_minute <= 0:
            raise ValueError("rate_per_minute must be positive")
        spacing = timedelta(seconds=60.0 / rate_per_minute)
        if self._engine.dialect.name == "postgresql":
            slot, now = self._reserve_in_one_statement(spacing)
        else:
            slot, now = self._reserve_under_lock(spacing)
        ahead = (slot - now).total_seconds()
        return max(0.0, ahead - (max(1.0, burst) - 1.0) * spacing.total_seconds())

    def _reserve_in_one_statement(self, spacing: timedelta) -> tuple[datetime, datetime]:
        """(the slot reserved, the database's time) from one UPDATE ... RETURNING.

        Every write of every replica passes here, so the row's lock must be held for
        as short a time as possible: a lock held from SELECT ... FOR UPDATE to COMMIT
        spans three round trips, and a replica descheduled in between (two busy cores)
        held every other replica's writes with it. One statement in autocommit holds
        it only while the server updates the row. ``clock_timestamp()`` in SET is read
        once the row is locked, so the time is never one from before a wait for it.
        """
        table = cast(sa.Table, WriteBudgetModel.__table__)
        now: sa.ColumnElement[datetime] = (
            sa.func.clock_timestamp() if self._clock is None
            else sa.literal(self._clock(), UTCDateTime()))
        slot = sa.func.greatest(table.c.next_slot_at, now)
        update = (
            sa.update(table).where(table.c.name == GRAPH_BUDGET)
            .values(next_slot_at=slot + sa.literal(spacing, sa.Interval()))
            # The new next slot and a time read after it was set: the slot reserved is
            # one spacing before, and a "now" read a moment late only shortens the
            # wait by that moment, which the answer's trip back more than makes up.
            .returning(table.c.next_slot_at, sa.type_coerce(now, UTCDateTime()))
        )
        with self._engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            row = conn.execute(update).first()
            if row is None:
                # Made long past: the first reservations find the whole burst free.
                conn.execute(postgresql.insert(table)
                             .values(name=GRAPH_BUDGET, next_slot_at=LONG_AGO)
                             .on_conflict_do_nothing())
                row = conn.execute(update).first()
        if row is None:
            raise StoreError(f"could not make the {table.name} row {GRAPH_BUDGET!r}")
        next_slot, at = row
        return next_slot - spacing, at

    def _reserve_under_lock(self, spacing: timedelta) -> tuple[datetime, datetime]:
        """SQLite (one process): read and move the slot under the writer's lock."""
        with self._engine.begin() as conn:
            next_slot: datetime = self._locked_row(
                conn, WriteBudgetModel, GRAPH_BUDGET, next_slot_at=LONG_AGO).next_slot_at
            now = self._now(conn)
            slot = max(next_slot, now)
            conn.execute(
                sa.update(WriteBudgetModel).where(WriteBudgetModel.name == GRAPH_BUDGET)
                .values(next_slot_at=slot + spacing)
            )
        return slot, now
