"""`rotator scan` lists a full scan that succeeded from the rows the scan wrote, not by
reading the inventory back: the listing must be exactly what the store would have given,
in the store's order, and the --json text exactly what ``json.dumps(indent=2)`` wrote.
Any other scan lists the store."""

from __future__ import annotations

import asyncio
import io
import json
import re
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from rotator.adapters.db import SqlStore
from rotator.bootstrap import engine_deps, load, open_store
from rotator.cli.scan import (
    HeldRows,
    credential_json,
    listing_rows,
    table_cells,
    write_listing_json,
)
from rotator.domain.credentials import CredentialKind, CredentialSource
from rotator.domain.records import InventoryRow, ScanStatus
from rotator.emulator.runner import RunningEmulator
from rotator.engine.scan import ScanReport, scan
from tests.support.emulated import rotator_env, run_rotator

_GUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@pytest.fixture
def store(emu: RunningEmulator, database_url: str) -> Iterator[SqlStore]:
    s = open_store(load({**emu.env, "ROTATOR_DATABASE_URL": database_url}).settings)
    yield s
    s.close()


async def _scan(emu: RunningEmulator, store: SqlStore
                ) -> tuple[ScanReport, list[Sequence[InventoryRow]]]:
    batches: list[Sequence[InventoryRow]] = []
    async with engine_deps(load({**emu.env, "ROTATOR_DATABASE_URL": "sqlite://"}),
                           store) as deps:
        report = await asyncio.wait_for(
            scan(deps, full=True, on_rows=lambda rows: batches.append(list(rows))), 120)
    return report, batches


_SUCCEEDED = ScanReport(scan_id="s", status=ScanStatus.SUCCEEDED)


def _shown(rows: Iterable[InventoryRow], now: datetime
           ) -> list[tuple[dict[str, object], list[str]]]:
    """Each row as the --json listing and the table show it."""
    return [(credential_json(r, now), table_cells(r, now)) for r in rows]


def _held(batches: list[Sequence[InventoryRow]]) -> HeldRows:
    held = HeldRows()
    for rows in batches:
        held.add(rows)
    return held


async def test_a_full_scan_lists_exactly_what_the_store_holds(
    emu: RunningEmulator, store: SqlStore
) -> None:
    # A name the JSON text must escape, owners, and two credentials ending together
    # (the order between them comes from the app id and key id).
    end = datetime.now(UTC).replace(microsecond=123456) + timedelta(days=3)
    app = emu.tenant.create_app('listing "Zoë" ☃', secrets=[("v-one~0123456789", end)])
    emu.tenant.add_secret(app.id, "v-two~0123456789", end, "second")
    try:
        report, batches = await _scan(emu, store)
        assert report.status is ScanStatus.SUCCEEDED, report.errors
        now = datetime.now(UTC)
        for within in (None, 5.0, -1.0):
            expected = store.inventory(within_days=within, now=now)
            count, listed = listing_rows(report, _held(batches), store, within, now)
            assert _shown(listed, now) == _shown(expected, now)
            assert count == len(expected)
        everything = store.inventory()
        assert {r.source for r in everything} == set(CredentialSource)
        assert any(r.owners for r in everything)

        head = {"scan": {"id": report.scan_id, "status": report.status, "unreadable": []}}
        items = [credential_json(r, now) for r in everything]
        out = io.StringIO()
        write_listing_json(out, head, iter(items))
        assert out.getvalue() == json.dumps({**head, "credentials": items}, indent=2,
                                            default=str) + "\n"
        out = io.StringIO()
        write_listing_json(out, head, iter([]))
        assert out.getvalue() == json.dumps({**head, "credentials": []}, indent=2,
                                            default=str) + "\n"
    finally:
        emu.tenant.delete_app(app.id)


async def test_a_partial_scan_lists_the_rows_it_could_not_refresh(
    emu: RunningEmulator, store: SqlStore
) -> None:
    first, _ = await _scan(emu, store)
    assert first.status is ScanStatus.SUCCEEDED
    emu.faults.update({"error_rates": {"graph.servicePrincipals": {"403": 1.0}}})
    report, batches = await _scan(emu, store)
    assert report.status is ScanStatus.PARTIAL
    now = datetime.now(UTC)
    _count, listed = listing_rows(report, _held(batches), store, None, now)
    rows = list(listed)
    # The service principals' last known credentials are listed, though not read now.
    assert rows == store.inventory(now=now)
    assert any(r.on_service_principal for r in rows)
    assert not any(r.on_service_principal for rows in batches for r in rows)


def test_the_command_lists_what_the_store_holds(emu: RunningEmulator, tmp_path: Path
                                                ) -> None:
    url = f"sqlite:///{tmp_path / 'r.db'}"
    env = rotator_env(emu, url, None)
    run = run_rotator(["scan", "--json", "--full"], env)
    assert run.returncode == 0, run.stderr
    printed = json.loads(run.stdout)
    store = open_store(load({**emu.env, "ROTATOR_DATABASE_URL": url}).settings)
    try:
        now = datetime.now(UTC)
        stored = [credential_json(r, now) for r in store.inventory()]
    finally:
        store.close()
    assert len(printed["credentials"]) == len(stored) > 0
    for shown, held in zip(printed["credentials"], stored, strict=True):
        # days_left was counted a moment earlier
        assert abs(shown.pop("days_left") - held.pop("days_left")) < 0.2
        assert shown == held
    human = run_rotator(["scan", "--full"], env)
    assert human.returncode == 0, human.stderr
    # The table's rows in the store's order: each names the app id, then the key id.
    shown_keys = [tuple(_GUID.findall(line)[-2:]) for line in human.stdout.splitlines()
                  if len(_GUID.findall(line)) >= 2]
    assert shown_keys == [(r["app_id"], r["key_id"]) for r in stored]
    assert f"\n{len(stored)} credential(s) shown; full scan succeeded" in human.stdout


def test_the_last_row_written_for_an_app_and_key_is_listed() -> None:
    end = datetime(2030, 1, 1, tzinfo=UTC)

    def row(app: str, key: str, name: str, days: float) -> InventoryRow:
        return InventoryRow(app_id=app, key_id=key, object_id=app, app_display_name=name,
                            kind=CredentialKind.SECRET, display_name=None, start_at=None,
                            end_at=end + timedelta(days=days))

    a, b = "0" * 8 + "-0000-0000-0000-" + "0" * 12, "f" * 8 + "-0000-0000-0000-" + "0" * 12
    held = HeldRows()
    held.add([row(a, "k1", "first", 1), row(b, "k1", "other app", 2)])
    held.add([row(a.upper(), "k1", "second", 3), row(a, "k2", "alone", 0)])
    listed = [(r.app_id, r.key_id, r.app_display_name) for r in
              listing_rows(_SUCCEEDED, held, None, None, end)[1]]  # type: ignore[arg-type]
    assert listed == [(a, "k2", "alone"), (b, "k1", "other app"), (a, "k1", "second")]
