"""What one reservation of the shared Graph write budget costs on PostgreSQL, the way
replicas ask for it: three processes' engines, each reserving one write at a time,
all at once, the two ways side by side in one run (the machine is noisy).

- ``one statement``: ``UPDATE ... RETURNING`` in autocommit (what replicas do);
- ``locked read``: ``SELECT ... FOR UPDATE``, the time, ``UPDATE``, ``COMMIT`` (what
  they did, and what SQLite still does), the row's lock held across round trips.

A generous rate keeps the slots near "now" so only the database work is timed. Run:

    .venv/bin/python -m tests.benchmarks.bench_write_budget --reservations 300
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import threading
import time
from collections.abc import Callable
from datetime import timedelta

import sqlalchemy as sa

from rotator.adapters.db import make_engine, migrate
from rotator.adapters.db.coordination_repo import SqlCoordination
from tests.support.databases import throwaway_pg_database

REPLICAS = 3
SPACING = timedelta(milliseconds=1)


def timed_round(reserve: Callable[[SqlCoordination], object], budgets: list[SqlCoordination],
                count: int) -> list[float]:
    """Seconds each reservation took, every replica's thread reserving ``count``."""
    times: list[float] = []
    lock = threading.Lock()
    go = threading.Barrier(len(budgets))

    def replica(budget: SqlCoordination) -> None:
        go.wait()
        mine = []
        for _ in range(count):
            t0 = time.perf_counter()
            reserve(budget)
            mine.append(time.perf_counter() - t0)
        with lock:
            times.extend(mine)

    threads = [threading.Thread(target=replica, args=(b,)) for b in budgets]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reservations", type=int, default=300, help="per replica and way")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    ways: dict[str, Callable[[SqlCoordination], object]] = {
        "one statement": lambda b: b._reserve_in_one_statement(SPACING),
        "locked read": lambda b: b._reserve_under_lock(SPACING),
    }
    with throwaway_pg_database() as url:
        migrate.upgrade(url)
        engines = [make_engine(url) for _ in range(REPLICAS)]
        budgets = [SqlCoordination(e) for e in engines]
        spent: dict[str, list[float]] = {name: [] for name in ways}
        wall: dict[str, float] = dict.fromkeys(ways, 0.0)
        for _ in range(args.rounds):  # alternating, so load changes hit both alike
            for name, reserve in ways.items():
                with engines[0].begin() as conn:
                    conn.execute(sa.text("DELETE FROM write_budgets"))
                t0 = time.perf_counter()
                spent[name] += timed_round(reserve, budgets, args.reservations)
                wall[name] += time.perf_counter() - t0
        for e in engines:
            e.dispose()
    for name, times in spent.items():
        times.sort()
        print(json.dumps({
            "way": name, "reservations": len(times),
            "median_ms": round(statistics.median(times) * 1000, 2),
            "p99_ms": round(times[int(len(times) * 0.99)] * 1000, 2),
            "reservations_per_second_all_replicas": round(len(times) / wall[name]),
            "machine_load_average": round(os.getloadavg()[0], 1),
        }))


if __name__ == "__main__":
    main()
