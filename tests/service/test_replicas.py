"""Three `rotator serve` replicas share one PostgreSQL database; the one scanning is
killed with -9 part-way through a scan, while rotations are in flight.

- The tenant is read once per scan interval, whatever the number of replicas: Graph
  list requests equal one scan's pages per interval.
- Replicas that did not scan are ready and show the shared scan on /metrics.
- Another replica takes the dead one's scan turn over and completes a scan within one
  interval of the kill; the scan it left is closed as interrupted.
- Every credential is still rotated exactly once, with no orphans.
"""

from __future__ import annotations

import math
import signal
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from rotator.config import load_policy, load_settings
from rotator.domain.records import ScanRun, ScanStatus
from rotator.domain.states import RotationState
from rotator.emulator.invariants import check_tenant, managed_apps
from rotator.emulator.runner import RunningEmulator
from rotator.emulator.tenant import Tenant
from tests.support.serve import (
    Served,
    make_due_apps,
    open_store,
    start_serve,
    wait_for,
    write_policy,
)

pytestmark = [pytest.mark.postgres, pytest.mark.slow, pytest.mark.timeout(600)]

APPS = 160
# Short enough to see a turn taken over in the test: replicas ask every 5 s, and a
# turn no longer renewed lapses 10 s after its last renewal (rotator.daemon).
INTERVAL = timedelta(seconds=30)
LISTINGS = ("graph.list", "graph.servicePrincipals")
PAGE = 100  # Graph's page when a listing expands owners, as rotator's does


def pages_of(fetch: Callable[[int, int], tuple[list[object], int | None]]) -> int:
    pages, position = 0, 0
    while position is not None:
        _, next_position = fetch(position, PAGE)
        pages, position = pages + 1, next_position
    return pages


def one_scans_pages(tenant: Tenant) -> int:
    """The listing pages one full scan of this tenant reads: which apps hold federated
    credentials (one advanced query, a page), the apps, then the service principals."""
    return 1 + pages_of(tenant.page) + pages_of(tenant.sp_page)


def listing_pages(emu: RunningEmulator) -> int:
    return sum(emu.faults.count_of(route, 200) for route in LISTINGS)


def scans(url: str) -> list[ScanRun]:
    store = open_store(url)
    try:
        return sorted(store.alerts.recent_scans(datetime(2000, 1, 1, tzinfo=UTC), 1000),
                      key=lambda s: s.started_at)
    finally:
        store.close()


def scan_turn(url: str) -> tuple[str | None, str | None]:
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with engine.connect() as conn:
        row = conn.execute(sa.text("SELECT owner, scan_id FROM scan_turns")).first()
    engine.dispose()
    return (row[0], row[1]) if row else (None, None)


class Sampler(threading.Thread):
    """(listing pages served, scans recorded) every half second, counted in that order:
    a sample that shows n scans recorded cannot count pages of a later one."""

    def __init__(self, emu: RunningEmulator, url: str) -> None:
        super().__init__(daemon=True)
        self.emu, self.url = emu, url
        self.samples: list[tuple[int, int]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            pages = listing_pages(self.emu)
            self.samples.append((pages, len(scans(self.url))))
            self.stop.wait(0.5)


def metric(served: Served, name: str) -> float | None:
    for line in served.get("/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def test_replicas_share_one_scan_and_rotate_each_credential_exactly_once(
    emu: RunningEmulator, pg_url: str, tmp_path: Path
) -> None:
    apps = make_due_apps(emu, APPS, "replica")
    originals = {a.app_id: emu.tenant.passwords(a.app_id)[0].key_id for a, _ in apps}
    policy_path = write_policy(
        tmp_path / "policy.toml", emu.base_url, [a.app_id for a, _ in apps],
        scan_interval_minutes=INTERVAL.total_seconds() / 60, max_concurrent_rotations=12,
        # A scan parses its pages on the event loop, which on two busy cores can hold a
        # replica's renewals back for seconds: leases of 4 s then change hands between
        # live replicas all the time. 10 s still hands a dead replica's work on quickly.
        lease_seconds=10,
        # Every scan reads the tenant in full (none reads only what changed), so each
        # reads the same pages and the read load can be counted in them.
        full_scan_interval_hours=0.001,
    )
    policy = load_policy(policy_path, load_settings(dict(emu.env)))
    # Listing pages answer slowly, so a scan lasts long enough to be killed part-way.
    emu.faults.update({"route_latency_ms": {route: 1200 for route in LISTINGS}})
    pages_per_scan = one_scans_pages(emu.tenant)
    before = listing_pages(emu)
    sampler = Sampler(emu, pg_url)
    sampler.start()
    store = open_store(pg_url)
    # Started side by side: one after the other takes half a minute on two busy cores.
    with ThreadPoolExecutor(3) as pool:
        replicas = list(pool.map(
            lambda i: start_serve(emu, pg_url, policy_path, tmp_path / f"serve-{i}.log"),
            range(3)))
    try:
        def completed() -> int:
            return len(store.list_rotations(states=[RotationState.COMPLETED]))

        wait_for(lambda: store.last_finished_scan() is not None, 90, "the first scan")
        # The replicas that did not scan are ready, and show the shared scan's results.
        for r in replicas:
            wait_for(lambda r=r: r.get("/readyz").status_code == 200, 30, "every replica ready")
        for r in replicas:
            shown = metric(r, "rotator_last_successful_scan_timestamp_seconds")
            # The end of a scan one replica ran (the scanner stamps its own a moment later).
            ends = [s.finished_at.timestamp() for s in scans(pg_url)
                    if s.status is ScanStatus.SUCCEEDED and s.finished_at is not None]
            assert shown is not None and any(abs(shown - end) < 5 for end in ends), (shown, ends)
            assert "rotator_credential_expiry_timestamp_seconds{" in r.get("/metrics").text

        # Until the next interval's scan was recorded, the tenant was read once, by one
        # replica: the most pages counted while only the first scan was recorded.
        wait_for(lambda: len(scans(pg_url)) > 1, INTERVAL.total_seconds() * 2, "a second scan")
        assert max(p for p, n in sampler.samples if n == 1) - before == pages_per_scan
        runs = scans(pg_url)
        assert runs[1].started_at - runs[0].started_at >= INTERVAL * 0.8

        # Kill the replica scanning, part-way, once its turn names the scan.
        found: list[tuple[str, ScanRun]] = []

        def scan_in_progress() -> bool:
            owner, scan_id = scan_turn(pg_url)
            run = store.get_scan(scan_id) if scan_id else None
            if owner and run is not None and run.status is ScanStatus.RUNNING:
                found.append((owner, run))
            return bool(found)

        wait_for(scan_in_progress, INTERVAL.total_seconds() * 2, "a scan in progress", 0.1)
        owner, cut = found[0]
        (victim,) = [r for r in replicas if f":{r.proc.pid}:" in owner]
        killed_at = datetime.now(UTC)
        victim.proc.send_signal(signal.SIGKILL)
        victim.proc.wait(timeout=10)
        in_flight = APPS - completed()

        def taken_over() -> ScanRun | None:
            return next((s for s in scans(pg_url) if s.started_at > killed_at
                         and s.status is ScanStatus.SUCCEEDED), None)

        wait_for(taken_over, INTERVAL.total_seconds() * 3, "another replica's scan")
        takeover = taken_over()
        assert takeover is not None and takeover.finished_at is not None
        assert takeover.finished_at - killed_at <= INTERVAL, (killed_at, takeover)
        left = store.get_scan(cut.id)
        assert left is not None and left.status is ScanStatus.INTERRUPTED, left

        # Directory reads lag writes (the emulator's default), so recovering the killed
        # replica's rotations settles its reads first: on two shared cores that can take
        # longer than the two minutes a strongly consistent directory needed.
        wait_for(lambda: completed() >= APPS, 300, "every rotation to complete")
        survivors = [r for r in replicas if r is not victim]
        for survivor in survivors:
            assert survivor.alive()
            assert survivor.get("/readyz").status_code == 200, survivor.get("/readyz").json()
        read_in_all = listing_pages(emu) - before
        runs = scans(pg_url)
        for survivor in survivors:
            assert survivor.stop() == 0
    finally:
        sampler.stop.set()
        for r in replicas:
            if r.alive():
                r.proc.kill()
                r.proc.wait()
    # Over the whole run: one scan's pages per scan (the killed one read part of its
    # pages), and no more scans than intervals, plus the one taking over.
    whole = [s for s in runs if s.status is not ScanStatus.INTERRUPTED]
    assert pages_per_scan * len(whole) <= read_in_all <= pages_per_scan * len(runs)
    span = runs[-1].started_at - runs[0].started_at
    assert len(runs) <= math.floor(span / (INTERVAL * 0.8)) + 2, [s.started_at for s in runs]
    print(f"rotations in flight at the kill: {in_flight}; scans: {len(runs)}; "
          f"listing pages: {read_in_all} ({pages_per_scan} a scan)")
    # exactly one rotation per app, completed; the original secret retired
    for app, _ in apps:
        rotations = store.list_rotations(app_id=app.app_id)
        assert [r.state for r in rotations] == [RotationState.COMPLETED], app.display_name
        (rotation,) = rotations
        assert rotation.old_key_id == originals[app.app_id]
        key_ids = {c.key_id for c in emu.tenant.passwords(app.app_id)}
        assert key_ids == {rotation.new_key_id}
        consumer = emu.tenant.vault.get(rotation.secret_name)
        assert consumer.tags["key_id"] == rotation.new_key_id
    # the killed replica's work was taken over (its leases expired)
    owners = {line.split('"owner": "')[1].split('"')[0]
              for r in replicas for line in r.log().splitlines() if '"rotator serving"' in line}
    assert len(owners) == 3
    problems = check_tenant(emu.tenant, store, managed_apps(policy))
    assert problems == []
    store.close()
