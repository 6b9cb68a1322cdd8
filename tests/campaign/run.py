"""The whole fault campaign: many random scenarios, then one table.

    .venv/bin/python -m tests.campaign.run --scenarios 400 [--seed 1]

Each scenario is drawn by Hypothesis (see scenario.py). Broken invariants are
counted (not raised) and the failing scenarios printed, so one bad case does
not hide the rest; keep any failing one as an @example in test_fault_campaign.py.
The secret-leak count comes from the invariant check's grep of the database file
for canary values and private-key material.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import tempfile
import time
from pathlib import Path

from hypothesis import HealthCheck, given, seed, settings

from rotator.logs import configure
from tests.campaign.scenario import (
    CampaignStats,
    Scenario,
    fresh_world,
    migrated_template,
    run_scenario,
    scenarios,
)
from tests.fakes import CANARY


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scenarios", type=int, default=400)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    log = io.StringIO()
    configure("json", "DEBUG", stream=log)
    stats = CampaignStats()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        template = migrated_template(Path(tmp))

        @seed(args.seed)
        @settings(max_examples=args.scenarios, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(scenario=scenarios())
        def campaign(scenario: Scenario) -> None:
            with fresh_world(template) as world:
                try:
                    asyncio.run(run_scenario(world, scenario, stats))
                except AssertionError as exc:
                    stats.invariants_broken += 1
                    if "secret value" in str(exc) or "database" in str(exc):
                        stats.secrets_leaked += 1
                    stats.failures.append(f"{scenario}: {exc}")

        campaign()
    if CANARY in log.getvalue() or "PRIVATE KEY" in log.getvalue():
        stats.secrets_leaked += 1
    elapsed = time.perf_counter() - started
    rows = [
        ("scenarios run", str(stats.scenarios)),
        *((f"faults scheduled: {k}", str(v)) for k, v in sorted(stats.faults.items())),
        ("rotations completed", str(stats.completed)),
        ("  of which after a rollback", str(stats.rolled_back_then_completed)),
        ("invariants broken (must be 0)", str(stats.invariants_broken)),
        ("secrets leaked (must be 0)", str(stats.secrets_leaked)),
        ("wall time", f"{elapsed:.0f} s"),
    ]
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"| {k.ljust(width)} | {v.rjust(8)} |")
    for failure in stats.failures[:20]:
        print("FAILED:", failure)
    raise SystemExit(1 if stats.invariants_broken or stats.secrets_leaked else 0)


if __name__ == "__main__":
    main()
