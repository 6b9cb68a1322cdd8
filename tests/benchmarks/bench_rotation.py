"""Rotation throughput at the tenant's write budget, against one-at-a-time rotation.

An emulated tenant with 20 ms of latency per call, propagation up to 5 s, and a
Graph write budget enforced as a tenant-wide token bucket (429 + Retry-After past
it). `rotator serve` works N due secrets; each rotation needs two Graph writes
(addPassword, removePassword), so the ceiling is budget/2 rotations per minute.
The baseline rotates K of the same kind of app one after the other, the way a
script or a per-secret function does. Run:

    .venv/bin/python -m tests.benchmarks.bench_rotation --apps 300 --budget 300
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rotator.domain.states import RotationState
from rotator.emulator.runner import start_emulator
from tests.support.serve import make_due_apps, open_store, start_serve, write_policy

SQLITE = "sqlite:///{tmp}/rotator.db"


def completed(url: str) -> int:
    store = open_store(url)
    try:
        return len(store.list_rotations(states=[RotationState.COMPLETED]))
    finally:
        store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--apps", type=int, default=300)
    parser.add_argument("--budget", type=float, default=300, help="Graph writes per minute")
    parser.add_argument("--baseline", type=int, default=8, help="apps rotated one at a time")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, start_emulator(
        apps=0, seed=3, propagation_seconds=5.0, workdir=Path(tmp) / "emu"
    ) as emu:
        per_second = args.budget / 60
        # Graph counts writes over windows of seconds to minutes; a bucket holding ten
        # seconds of budget models that without letting a client borrow a minute ahead.
        emu.faults.update({"latency_ms": 20, "throttle_tenant_capacity": per_second * 10,
                           "throttle_tenant_refill_per_second": per_second})
        apps = make_due_apps(emu, args.apps, "bench")
        url = SQLITE.format(tmp=tmp)
        subprocess.run([sys.executable, "-m", "rotator", "db", "upgrade"], check=True,
                       capture_output=True, env={"ROTATOR_DATABASE_URL": url, "PATH": ""})
        # Stay a little under the budget, as the daemon documentation advises.
        policy = write_policy(Path(tmp) / "policy.toml", emu.env["ROTATOR_VAULT_URL"],
                              [a.app_id for a, _ in apps], verify_successes=3,
                              max_concurrent_rotations=48,
                              graph_writes_per_minute=args.budget * 0.95,
                              scan_interval_minutes=60)
        emu.faults.reset_counters()
        served = start_serve(emu, url, policy, Path(tmp) / "serve.log")
        started = time.monotonic()
        marks: dict[int, float] = {}  # completions reached -> when
        try:
            while (done := completed(url)) < args.apps:
                marks.setdefault(done, time.monotonic())
                if time.monotonic() - started > 3600:
                    raise SystemExit("did not finish within an hour")
                time.sleep(1)
        finally:
            served.stop()
        elapsed = time.monotonic() - started
        marks.setdefault(args.apps, time.monotonic())
        # Steady state: from 10 % to 90 % done, without start-up and the last verifies.
        lo, hi = int(args.apps * 0.1), int(args.apps * 0.9)
        t_lo = min(t for n, t in marks.items() if n >= lo)
        t_hi = min(t for n, t in marks.items() if n >= hi)
        steady = (hi - lo) / ((t_hi - t_lo) / 60)
        graph_requests = emu.faults.count_of("graph.*")
        throttled = emu.faults.count_of("graph.*", 429)
        rate = args.apps / (elapsed / 60)
        ceiling = args.budget / 2

        # baseline: the same rotation, one app at a time, through the admin command
        base_apps = make_due_apps(emu, args.baseline, "base")
        base_policy = write_policy(Path(tmp) / "base.toml", emu.env["ROTATOR_VAULT_URL"],
                                   [a.app_id for a, _ in base_apps], verify_successes=3)
        env = {"ROTATOR_ENV_FILE": str(emu.env_file), "ROTATOR_DATABASE_URL": url,
               "ROTATOR_CONFIG": str(base_policy), "PATH": ""}
        b_start = time.monotonic()
        for app, _ in base_apps:
            subprocess.run([sys.executable, "-m", "rotator", "rotate", "--app", app.app_id,
                            "--retire-now"], check=True, capture_output=True, env=env)
        b_rate = args.baseline / ((time.monotonic() - b_start) / 60)
    result = {
        "apps": args.apps, "budget_writes_per_min": args.budget,
        "seconds": round(elapsed, 1), "rotations_per_min": round(rate, 1),
        "ceiling_per_min": ceiling, "fraction_of_ceiling": round(rate / ceiling, 3),
        "steady_rotations_per_min": round(steady, 1),
        "steady_fraction_of_ceiling": round(steady / ceiling, 3),
        "graph_requests": graph_requests, "throttled_429": throttled,
        "throttled_fraction": round(throttled / max(1, graph_requests), 4),
        "baseline_rotations_per_min": round(b_rate, 2),
        "speedup_vs_one_at_a_time": round(rate / b_rate, 1),
    }
    print(json.dumps(result))
    print()
    print(f"| rotations/min, whole run | {rate:.1f} | ceiling {ceiling:g} | "
          f"{rate / ceiling:.0%} of ceiling | goal ≥ 90 % |")
    print(f"| rotations/min, 10-90 % | {steady:.1f} | ceiling {ceiling:g} | "
          f"{steady / ceiling:.0%} of ceiling | goal ≥ 90 % |")
    print(f"| Graph 429s | {throttled} of {graph_requests} | "
          f"{throttled / max(1, graph_requests):.2%} | goal < 1 % |")
    print(f"| one at a time | {b_rate:.2f} rotations/min | speed-up {rate / b_rate:.1f}x | |")


if __name__ == "__main__":
    main()
