"""A clean stop at any moment: SIGTERM while the scan is recording the inventory."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from rotator.cli.attention import scan_health
from rotator.domain.records import ScanStatus
from rotator.emulator.runner import RunningEmulator, start_emulator
from tests.support.serve import open_store, serving, wait_for, write_policy


@pytest.fixture(scope="module")
def big_emu(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningEmulator]:
    # Four pages of applications, so the scan is still reading when the first is recorded.
    with start_emulator(apps=3000, seed=5, workdir=tmp_path_factory.mktemp("emu")) as running:
        yield running


def test_sigterm_while_the_inventory_is_recorded(
    big_emu: RunningEmulator, pg_url: str, tmp_path: Path
) -> None:
    policy = write_policy(tmp_path / "policy.toml", big_emu.base_url, [],
                          scan_interval_minutes=60)
    store = open_store(pg_url)
    engine = sa.create_engine(pg_url, poolclass=sa.pool.NullPool)

    def recorded_mid_scan() -> bool:
        last = store.last_scan()
        if last is None or last.status is not ScanStatus.RUNNING:
            return False
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT count(*) FROM credentials WHERE scan_run_id = :s"),
                                {"s": last.id}).scalar_one()
        return rows > 0

    # Slow pages: the scan takes seconds, most of it between the inventory writes.
    big_emu.faults.update({"latency_ms": 800})
    try:
        with serving(big_emu, pg_url, policy, tmp_path / "serve.log") as served:
            wait_for(recorded_mid_scan, 60, "the scan to record its first rows", every=0.05)
            assert served.get("/readyz").status_code == 503  # no scan has finished
            assert served.stop() == 0
            log = served.log()
    finally:
        big_emu.faults.update({"latency_ms": 0})
        engine.dispose()
    try:
        assert "Traceback" not in log and "CancelledError" not in log, log[-3000:]
        assert '"rotator stopped"' in log
        last = store.last_scan()
        assert last is not None and last.status is ScanStatus.INTERRUPTED, last
        assert last.finished_at is not None and last.apps_seen > 0
        assert store.last_successful_scan() is None
        audit = [e for e in store.history() if e.step == "scan"]
        assert [(e.outcome, e.message.split(":")[0]) for e in audit] == \
            [("info", "scan interrupted")], audit
        health = scan_health(last, None, interval=timedelta(hours=1),
                             now=last.finished_at + timedelta(minutes=1))
        assert not health.healthy and health.summary.startswith("interrupted"), health
    finally:
        store.close()
