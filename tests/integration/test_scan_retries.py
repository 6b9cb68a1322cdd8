"""A scan survives one bad page: a listing page answered 500, or with a body that is not
JSON, is asked again after a backoff instead of failing the scan of the whole tenant."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from rotator.adapters import graph as graph_adapter
from rotator.adapters.db import SqlStore
from rotator.bootstrap import engine_deps, load, open_store
from rotator.domain.records import ScanStatus
from rotator.emulator.runner import RunningEmulator
from rotator.engine.scan import ScanReport, scan


@pytest.fixture
def store(emu: RunningEmulator, tmp_path: Path) -> Iterator[SqlStore]:
    s = open_store(load({**emu.env,
                         "ROTATOR_DATABASE_URL": f"sqlite:///{tmp_path / 'r.db'}"}).settings)
    yield s
    s.close()


@pytest.fixture(autouse=True)
def quick_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """The backoff's length is not under test; its taking place is."""
    monkeypatch.setattr(graph_adapter, "PAGE_RETRY_SECONDS", 0.05)


async def _scan(emu: RunningEmulator, store: SqlStore) -> ScanReport:
    async with engine_deps(load({**emu.env, "ROTATOR_DATABASE_URL": "sqlite://"}),
                           store) as deps:
        return await asyncio.wait_for(scan(deps, full=True), 120)


async def test_a_page_answered_500_once_is_asked_again(emu: RunningEmulator, store: SqlStore
                                                     ) -> None:
    clean = await _scan(emu, store)
    before = emu.faults.count_of("graph.list", 500)
    emu.faults.update({"error_counts": {"graph.list": {"500": 1}}})
    report = await _scan(emu, store)
    assert emu.faults.count_of("graph.list", 500) == before + 1  # the fault did happen
    assert report.status is ScanStatus.SUCCEEDED, report.error
    assert (report.apps_seen, report.credentials_seen) == (clean.apps_seen,
                                                           clean.credentials_seen)
    assert report.graph_requests == clean.graph_requests + 1


async def test_a_page_that_is_not_json_is_asked_again(emu: RunningEmulator, store: SqlStore
                                                      ) -> None:
    clean = await _scan(emu, store)
    emu.faults.update({"garbled_counts": {"graph.servicePrincipals": 1}})
    report = await _scan(emu, store)
    assert emu.faults.garbled_counts == {"graph.servicePrincipals": 0}  # it was sent
    assert report.status is ScanStatus.SUCCEEDED, report.errors
    assert report.service_principals_seen == clean.service_principals_seen


async def test_a_page_that_keeps_failing_fails_the_scan(emu: RunningEmulator, store: SqlStore
                                                        ) -> None:
    # Every try fails: of the query for apps with federated credentials (which leaves the
    # scan partial), then of the app listing's first page (which fails it).
    tries = graph_adapter.PAGE_ATTEMPTS
    emu.faults.update({"error_counts": {"graph.list": {"500": 2 * tries}}})
    report = await _scan(emu, store)
    assert report.status is ScanStatus.FAILED
    assert report.error is not None and "generalException" in report.error
    assert report.graph_requests == 2 + 2 * tries  # delta links, tries of both
