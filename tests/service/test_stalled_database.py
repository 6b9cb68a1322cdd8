"""`rotator serve` on PostgreSQL while its database stalls for real: another connection
holds an ACCESS EXCLUSIVE lock on ``rotations``, so every query of the reconcile pass
waits. /healthz must still answer (the database calls run in worker threads, never on
the event loop), and once the lock goes the service carries on by itself.

The latency is printed, not asserted: the machine is shared and a timed assertion would
be flaky. What is asserted is functional: /healthz answers while the lock is held and
the service's query is seen waiting on it.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from statistics import median

import httpx
import pytest
import sqlalchemy as sa

from rotator.emulator.runner import RunningEmulator
from tests.support.serve import serving, wait_for, write_policy

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(120)]

WAITING_ON_LOCK = sa.text(
    "SELECT count(*) FROM pg_stat_activity "
    "WHERE datname = current_database() AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
)


def healthz_latencies(url: str, count: int = 10) -> list[float]:
    """Milliseconds per /healthz answer; each must be the live answer."""
    latencies = []
    for _ in range(count):
        started = time.perf_counter()
        # The timeout only keeps a broken service from hanging the test; it is no bound.
        answer = httpx.get(url, timeout=10)
        latencies.append((time.perf_counter() - started) * 1000)
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"status": "alive"}
        time.sleep(0.1)
    return latencies


def reconcile_runs(metrics_text: str) -> float:
    found = re.search(r'rotator_job_runs_total\{job="reconcile",outcome="ok"\} (\S+)',
                      metrics_text)
    return float(found.group(1)) if found else 0.0


def test_healthz_answers_while_the_database_is_locked_and_the_service_recovers(
    emu: RunningEmulator, pg_url: str, tmp_path: Path
) -> None:
    app_ids = [a.app_id for a in emu.tenant.apps_in_order()[:2]]
    policy = write_policy(tmp_path / "policy.toml", emu.base_url, app_ids)
    locker = sa.create_engine(pg_url, poolclass=sa.pool.NullPool)
    with serving(emu, pg_url, policy, tmp_path / "serve.log") as served:
        wait_for(lambda: served.get("/readyz").status_code == 200, 60, "the first scan")
        baseline = healthz_latencies(served.url("/healthz"))
        with locker.connect() as conn:
            trans = conn.begin()
            conn.execute(sa.text("LOCK TABLE rotations IN ACCESS EXCLUSIVE MODE"))
            try:
                # The reconcile pass runs every second: wait until its query is stuck.
                with locker.connect() as watcher:
                    wait_for(lambda: watcher.execute(WAITING_ON_LOCK).scalar_one() > 0, 20,
                             "a query of the service to wait on the lock")
                latencies = healthz_latencies(served.url("/healthz"))
                with locker.connect() as watcher:
                    still_waiting = watcher.execute(WAITING_ON_LOCK).scalar_one()
                ready = served.get("/readyz")
                print(f"/healthz median (max) over {len(latencies)} requests: "
                      f"{median(baseline):.1f} ({max(baseline):.1f}) ms before the stall, "
                      f"{median(latencies):.1f} ({max(latencies):.1f}) ms while the "
                      f"rotations table was locked; /readyz {ready.status_code}; queries "
                      f"waiting on the lock: {still_waiting}")
                assert still_waiting > 0, "the stall ended before /healthz was measured"
                runs_during_stall = reconcile_runs(served.get("/metrics").text)
                assert runs_during_stall > 0, "no reconcile pass ran before the stall"
            finally:
                trans.rollback()
        # The lock is gone: the stuck pass finishes and later passes run again.
        wait_for(lambda: reconcile_runs(served.get("/metrics").text) >= runs_during_stall + 2,
                 30, "reconcile passes to run again after the stall")
        assert served.get("/readyz").status_code == 200
        assert served.alive()
    locker.dispose()
