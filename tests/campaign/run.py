"""The whole fault campaign, then one table.

    .venv/bin/python -m tests.campaign.run [--scenarios 400] [--matrix full|fast|none]
        [--paths certificate-object,...]

Two parts:

* Randomised scenarios (scenario.py), drawn by Hypothesis: the real engine and
  database (SQLite, and a shared PostgreSQL database) against in-memory Graph, Key
  Vault and token fakes, through crashes, 5xx/429/409 answers, lost responses,
  database outages, token refusals and token-endpoint 503s up to past the verify
  deadline, clock jumps, failing consumer hooks and usage-report outages, always under
  read-after-write lag and removal lag (the emulator's defaults, modelled on the fake
  clock).
* The crash matrix (crash_matrix.py): real `rotator rotate` processes against the
  emulated tenant over HTTPS, killed by SIGKILL at every failpoint of every path
  (secret, certificate first/held, both rollbacks, a secret with a consumer hook), on
  SQLite and PostgreSQL.

Broken invariants are counted (not raised) and the failing cases printed, so one
bad case does not hide the rest; keep any failing scenario as an @example in
test_fault_campaign.py. Leaks are counted from the invariant checks' greps (database,
CLI output) and a final grep of every log line, metric and alert the scenarios made.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from hypothesis import HealthCheck, given, seed, settings

from rotator.adapters.db import migrate
from rotator.logs import configure
from tests.campaign.crash_matrix import PATH_BY_NAME, all_cases, fast_cases
from tests.campaign.matrix_run import MatrixStats, run_matrix
from tests.campaign.scenario import (
    CampaignStats,
    Scenario,
    fresh_world,
    leaked_in,
    migrated_template,
    run_scenario,
    scenarios,
)
from tests.support.databases import throwaway_pg_database


@contextlib.contextmanager
def _scenario_database(kind: str) -> Iterator[str | None]:
    if kind == "sqlite":
        yield None  # a fresh file per scenario
        return
    with throwaway_pg_database() as url:
        migrate.upgrade(url)
        yield url


def run_random(count: int, seed_value: int, database: str = "sqlite") -> CampaignStats:
    log = io.StringIO()
    configure("json", "DEBUG", stream=log)
    stats = CampaignStats()
    with tempfile.TemporaryDirectory() as tmp, _scenario_database(database) as url:
        template = migrated_template(Path(tmp))

        @seed(seed_value)
        @settings(max_examples=count, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(scenario=scenarios())
        def campaign(scenario: Scenario) -> None:
            with fresh_world(template, url) as world:
                try:
                    asyncio.run(run_scenario(world, scenario, stats))
                except AssertionError as exc:
                    stats.invariants_broken += 1
                    if "secret" in str(exc) or "database" in str(exc):
                        stats.secrets_leaked += 1
                    stats.failures.append(f"{scenario}: {exc}")

        campaign()
    if leaked_in(log.getvalue()):
        stats.secrets_leaked += 1
        stats.failures.append("a secret value or private key reached the log")
    return stats


def _table(rows: list[tuple[str, str]]) -> None:
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"| {k.ljust(width)} | {v.rjust(8)} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenarios", type=int, default=400,
                        help="randomised scenarios per database (0 skips them)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--matrix", choices=["full", "fast", "none"], default="full",
                        help="crash matrix cases to run")
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--paths", default="",
                        help="only these crash matrix paths, comma-separated "
                        "(e.g. certificate-object,certificate-keyvault)")
    args = parser.parse_args()

    started = time.perf_counter()
    databases = args.databases.split(",")
    stats = CampaignStats()
    for database in databases if args.scenarios else []:
        stats.merge(run_random(args.scenarios, args.seed, database))
    random_seconds = time.perf_counter() - started
    matrix = MatrixStats()
    if args.matrix != "none":
        cases = all_cases() if args.matrix == "full" else fast_cases()
        if args.paths:
            unknown = set(args.paths.split(",")) - set(PATH_BY_NAME)
            if unknown:
                parser.error(f"unknown paths {sorted(unknown)}; known: {sorted(PATH_BY_NAME)}")
            cases = [c for c in cases if c.path.name in args.paths.split(",")]
        matrix = run_matrix(cases, databases, workers=args.workers)

    rows = [
        (f"randomised scenarios run ({' + '.join(databases)})", str(stats.scenarios)),
        *((f"  faults injected: {k}", str(v)) for k, v in sorted(stats.faults.items())),
        ("  rotations completed", str(stats.completed)),
        ("    of which after a rollback", str(stats.rolled_back_then_completed)),
        ("  wall time", f"{random_seconds:.0f} s"),
        ("crash matrix cases (real processes)", str(matrix.cases)),
        *((f"  SIGKILLs: {k}", str(v)) for k, v in sorted(matrix.killed_by.items())),
        ("  converged after restart", str(matrix.converged)),
        ("  wall time", f"{matrix.seconds:.0f} s"),
        ("invariants broken (must be 0)",
         str(stats.invariants_broken + matrix.invariants_broken)),
        ("secrets leaked (must be 0)", str(stats.secrets_leaked + matrix.secrets_leaked)),
    ]
    _table(rows)
    for failure in (stats.failures + matrix.failures)[:30]:
        print("FAILED:", failure)
    broken = stats.invariants_broken + matrix.invariants_broken
    leaked = stats.secrets_leaked + matrix.secrets_leaked
    raise SystemExit(1 if broken or leaked else 0)


if __name__ == "__main__":
    main()
