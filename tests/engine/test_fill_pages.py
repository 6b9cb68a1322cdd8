"""Filling free slots reads due rotations a page at a time: enough for the free slots,
and on past a page of rotations that are not ready (waiting out their grace period)."""

from __future__ import annotations

from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest

from rotator.domain.rotation import Rotation
from rotator.domain.states import RotationState
from rotator.engine import reconcile
from rotator.engine.reconcile import Reconciler
from tests.support.records import T0, make_rotation


class PagedStore:
    def __init__(self, rows: list[Rotation]) -> None:
        self.rows = rows
        self.reads: list[tuple[int, int]] = []

    def due_rotations(self, now: datetime, limit: int, offset: int = 0) -> list[Rotation]:
        self.reads.append((limit, offset))
        return self.rows[offset:offset + limit]


def waiting_for_grace(n: int) -> list[Rotation]:
    return [make_rotation(state=RotationState.PROMOTED, retire_after=T0 + timedelta(hours=1))
            for _ in range(n)]


def reconciler(store: PagedStore, monkeypatch: pytest.MonkeyPatch, slots: int) -> Reconciler:
    async def no_drive(self: Reconciler, rotation_id: str) -> None:
        return None

    monkeypatch.setattr(Reconciler, "_drive", no_drive)
    async def db(call: Any, /, *args: Any, **kwargs: Any) -> Any:
        return call(*args, **kwargs)

    deps: Any = SimpleNamespace(store=store, now=lambda: T0, db=db)
    return Reconciler(deps, max_concurrent=slots)


async def test_one_free_slot_reads_one_page_not_every_due_rotation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = PagedStore([make_rotation() for _ in range(1_000)])
    filler = reconciler(store, monkeypatch, slots=1)
    assert await filler.fill() == 1
    assert store.reads == [(reconcile.FILL_PAGE, 0)]


async def test_pages_go_past_rotations_waiting_out_their_grace(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ready = [make_rotation(), make_rotation()]
    store = PagedStore(waiting_for_grace(reconcile.FILL_PAGE * 2 + 5) + ready)
    filler = reconciler(store, monkeypatch, slots=4)
    assert await filler.fill() == 2
    assert set(filler.in_flight) == {r.id for r in ready}
    assert [offset for _, offset in store.reads] == [0, 64, 128]
