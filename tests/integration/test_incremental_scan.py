"""Incremental scans through the real SDKs: the first scan is full and stores Graph's delta
links; the next ones read only what changed (added, changed and deleted apps and
credentials, service principals' own credentials) and leave the same inventory, findings
and report a full scan would; an expired link falls back to a full scan; a scan that
stops part-way never stores a link past changes it did not write."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from rotator.adapters import graph as graph_adapter
from rotator.adapters.db import SqlStore
from rotator.alerts.runner import take_snapshot
from rotator.bootstrap import engine_deps, load, open_store
from rotator.domain.records import InventoryRow, ScanStatus
from rotator.emulator.runner import RunningEmulator
from rotator.engine.scan import ScanReport, scan
from rotator.report.render import render_csv
from rotator.report.source import load_report
from tests.support.emulated import rotator_env, run_rotator


@pytest.fixture
def store(emu: RunningEmulator, database_url: str) -> Iterator[SqlStore]:
    s = open_store(load({**emu.env, "ROTATOR_DATABASE_URL": database_url}).settings)
    _forget_links(s)  # the PostgreSQL database is shared by the session's tests
    yield s
    _forget_links(s)
    s.close()


@pytest.fixture(autouse=True)
def consistent_reads(emu: RunningEmulator) -> Iterator[None]:
    """The full listing is served by read replicas that learn writes late; the comparison
    with an incremental scan needs both to read the same tenant, so reads keep up here
    (the lag has its own tests)."""
    before = emu.tenant.graph_consistency_seconds
    emu.tenant.graph_consistency_seconds = 0
    yield
    emu.tenant.graph_consistency_seconds = before


def _forget_links(store: SqlStore) -> None:
    with store._engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM delta_links"))


async def _scan(emu: RunningEmulator, store: SqlStore, **kwargs: Any) -> ScanReport:
    async with engine_deps(load({**emu.env, "ROTATOR_DATABASE_URL": "sqlite://"}),
                           store) as deps:
        return await asyncio.wait_for(scan(deps, **kwargs), 120)


def _in(days: float) -> datetime:
    return datetime.now(UTC) + timedelta(days=days)


def _app(emu: RunningEmulator, name: str, *secrets: tuple[str, float]) -> Any:
    """An app with secrets of these display names ending in so many days."""
    app = emu.tenant.create_app(name)
    for display_name, days in secrets:
        emu.tenant.add_secret(app.id, f"{display_name}-value~0123456789", _in(days),
                              display_name)
    return app


def _plain(rows: list[InventoryRow]) -> list[InventoryRow]:
    return sorted((replace(r, scan_run_id=None, seen_at=None) for r in rows),
                  key=lambda r: (r.app_id, r.key_id))


async def test_changes_are_applied_and_match_a_full_scan(
    emu: RunningEmulator, store: SqlStore, tmp_path: Path
) -> None:
    tenant = emu.tenant
    changed = _app(emu, "inc-changed", ("keep", 5), ("drop", 40))
    doomed = _app(emu, "inc-doomed", ("gone", 3))
    first = await _scan(emu, store)
    assert (first.status, first.mode) == (ScanStatus.SUCCEEDED, "full"), first.errors
    assert store.delta_links() is not None
    assert store.inventory(app_id=doomed.app_id)

    added = _app(emu, "inc-added", ("new", 2))
    tenant.add_password(changed.id, "fresh", _in(90))
    dropped = next(p for p in changed.password_credentials if p.end > _in(30))
    tenant.remove_password(changed.id, dropped.key_id)
    tenant.delete_app(doomed.id)
    sp = tenant.sp_by_app_id(changed.app_id)
    assert sp is not None
    tenant.sp_add_password(sp.id, "sp-own", _in(7))

    second = await _scan(emu, store)
    assert (second.status, second.mode) == (ScanStatus.SUCCEEDED, "delta"), second.errors
    # Three apps changed or added or deleted, and the service principals of three.
    assert second.apps_changed == 6
    # One page of each delta listing, one JSON batch of owner reads for each, and which
    # of the changed apps hold federated credentials (one advanced query).
    assert second.graph_requests == 5
    run = store.get_scan(second.scan_id)
    assert run is not None and (run.mode, run.apps_changed) == ("delta", second.apps_changed)
    assert store.inventory(app_id=doomed.app_id) == []
    assert {r.display_name for r in store.inventory(app_id=changed.app_id)} == {
        "keep", "fresh", "sp-own"}
    assert [r.display_name for r in store.inventory(app_id=added.app_id)] == ["new"]

    # The same tenant read in full into another database: the same inventory, findings
    # and report.
    loaded = load({**emu.env, "ROTATOR_DATABASE_URL": f"sqlite:///{tmp_path / 'full.db'}"})
    fresh = open_store(loaded.settings)
    try:
        assert (await _scan(emu, fresh, full=True)).status is ScanStatus.SUCCEEDED
        assert _plain(store.inventory()) == _plain(fresh.inventory())
        now = datetime.now(UTC)
        assert (take_snapshot(store, loaded.policy, now).findings
                == take_snapshot(fresh, loaded.policy, now).findings)
        assert (render_csv(load_report(store, loaded.policy, now))
                == render_csv(load_report(fresh, loaded.policy, now)))
    finally:
        fresh.close()
        tenant.delete_app(changed.id)
        tenant.delete_app(added.id)


async def test_an_expired_link_or_the_interval_falls_back_to_a_full_scan(
    emu: RunningEmulator, store: SqlStore
) -> None:
    assert (await _scan(emu, store)).mode == "full"
    assert (await _scan(emu, store)).mode == "delta"
    emu.tenant.reset_change_tracking()  # Graph answers the stored link 410 Gone
    fallback = await _scan(emu, store)
    assert (fallback.status, fallback.mode) == (ScanStatus.SUCCEEDED, "full"), fallback.errors
    assert (await _scan(emu, store)).mode == "delta"  # the new links work
    with store._engine.begin() as conn:
        conn.execute(sa.update(sa.table("delta_links", sa.column("full_scan_at"))).values(
            full_scan_at=datetime.now(UTC) - timedelta(hours=25)))
    assert (await _scan(emu, store)).mode == "full"  # full_scan_interval_hours (24)
    assert (await _scan(emu, store, full=True)).mode == "full"
    # A link Graph refuses for good (400 "Badly formed token") is replaced, not retried.
    with store._engine.begin() as conn:
        conn.execute(sa.text("UPDATE delta_links SET link = :l WHERE resource = 'applications'"),
                     {"l": emu.env["ROTATOR_GRAPH_URL"] + "/applications/delta?$deltatoken=bm90"})
    refused = await _scan(emu, store)
    assert (refused.status, refused.mode) == (ScanStatus.SUCCEEDED, "full"), refused.error


async def test_a_scan_stopped_part_way_keeps_the_old_link(
    emu: RunningEmulator, store: SqlStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(graph_adapter, "PAGE_RETRY_SECONDS", 0.05)  # retried, not slow
    tenant = emu.tenant
    app = _app(emu, "inc-crash", ("before", 5))
    try:
        assert (await _scan(emu, store)).mode == "full"
        links = store.delta_links()
        tenant.add_password(app.id, "after", _in(60))
        # The applications' changes are read, then the service principals' listing fails:
        # nothing is written and the stored link still points before the change.
        emu.faults.update({"error_rates": {"graph.servicePrincipalsDelta": {500: 1.0}}})
        broken = await _scan(emu, store)
        assert (broken.status, broken.mode) == (ScanStatus.FAILED, "delta")
        assert store.delta_links() == links
        assert [r.display_name for r in store.inventory(app_id=app.app_id)] == ["before"]
        emu.faults.update({"error_rates": {}})
        healed = await _scan(emu, store)
        assert (healed.status, healed.mode) == (ScanStatus.SUCCEEDED, "delta")
        assert sorted(r.display_name or "" for r in store.inventory(app_id=app.app_id)) == [
            "after", "before"]
        assert store.delta_links() != links
    finally:
        tenant.delete_app(app.id)


def test_scan_and_status_say_how_the_inventory_was_read(
    emu: RunningEmulator, tmp_path: Path
) -> None:
    env = rotator_env(emu, f"sqlite:///{tmp_path / 'r.db'}", None)
    first = run_rotator(["scan", "--json"], env)
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["scan"]["mode"] == "full"
    second = json.loads(run_rotator(["scan", "--json"], env).stdout)["scan"]
    assert second["mode"] == "delta" and second["graph_requests"] >= 2
    status = run_rotator(["status", "--json"], env)
    last = json.loads(status.stdout)["last_scan"]
    assert (last["mode"], last["graph_requests"], last["apps_changed"]) == (
        "delta", second["graph_requests"], second["apps_changed"])
    forced = json.loads(run_rotator(["scan", "--json", "--full"], env).stdout)["scan"]
    assert forced["mode"] == "full" and forced["apps_changed"] is None


async def test_owner_reads_the_batch_missed_are_asked_one_by_one(
    emu: RunningEmulator, store: SqlStore
) -> None:
    tenant = emu.tenant
    assert (await _scan(emu, store)).mode == "full"
    app = _app(emu, "inc-batch", ("only", 9))
    try:
        emu.faults.update({"error_counts": {"graph.batch": {"500": 2}}})
        report = await _scan(emu, store)
        assert (report.status, report.mode) == (ScanStatus.SUCCEEDED, "delta"), report.errors
        assert report.graph_requests > 4  # both batches failed; the reads went one by one
        (row,) = store.inventory(app_id=app.app_id)
        # Owners read (no user owns it: an empty tuple), not left unknown (None).
        assert (row.display_name, row.owners) == ("only", ())
    finally:
        tenant.delete_app(app.id)
