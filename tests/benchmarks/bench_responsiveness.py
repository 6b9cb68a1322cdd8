"""Responsiveness and verification latency.

- `rotator --help` and `rotator status` wall time (lazy imports keep them fast),
- idle memory of `rotator serve`, and the demo's total time,
- verify latency: for a propagation delay of D seconds, how long verification
  takes beyond D (goal: within 20 % of D plus the consecutive successes' spacing).

    .venv/bin/python -m tests.benchmarks.bench_responsiveness
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rotator.domain.states import RotationState
from rotator.emulator.runner import start_emulator
from tests.support.serve import (
    Served,
    make_due_apps,
    open_store,
    start_serve,
    wait_for,
    write_policy,
)

SUCCESS_INTERVAL = 1.0  # VerifyTiming.success_interval: the pause between consecutive tokens


def wall(args: list[str], env: dict[str, str], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "rotator", *args], env=env, check=False,
                       capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    rows: list[tuple[str, str, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        db = f"sqlite:///{tmp}/r.db"
        env = {**os.environ, "ROTATOR_DATABASE_URL": db}
        subprocess.run([sys.executable, "-m", "rotator", "db", "upgrade"], env=env, check=True,
                       capture_output=True)
        rows.append(("rotator --help", f"{wall(['--help'], env, 7):.2f} s", "instant"))
        rows.append(("rotator status", f"{wall(['status'], env, 5):.2f} s", "instant"))
        start = time.perf_counter()
        demo = subprocess.run([sys.executable, "-m", "rotator", "demo"], env=env,
                              capture_output=True, check=False)
        rows.append(("rotator demo (total, exit "
                     f"{demo.returncode})", f"{time.perf_counter() - start:.1f} s", "< 60 s"))
        for delay in (2.0, 5.0):
            with start_emulator(apps=0, seed=5, propagation_seconds=delay,
                                workdir=Path(tmp) / f"emu{delay:g}") as emu:
                apps = make_due_apps(emu, 5, "lat")
                policy = write_policy(Path(tmp) / f"p{delay:g}.toml",
                                      emu.env["ROTATOR_VAULT_URL"], [a.app_id for a, _ in apps],
                                      verify_successes=3)
                url = f"sqlite:///{tmp}/lat{delay:g}.db"
                renv = {**os.environ, "ROTATOR_ENV_FILE": str(emu.env_file),
                        "ROTATOR_DATABASE_URL": url, "ROTATOR_CONFIG": str(policy)}
                for app, _ in apps:
                    subprocess.run([sys.executable, "-m", "rotator", "rotate", "--app",
                                    app.app_id, "--retire-now"], env=renv, check=True,
                                   capture_output=True)
                store = open_store(url)
                waits = [r.verify_seconds or 0.0 for r in
                         store.list_rotations(states=[RotationState.COMPLETED])]
                store.close()
                budget = delay * 1.2 + 2 * SUCCESS_INTERVAL
                rows.append((f"verify, propagation up to {delay:g} s (median of {len(waits)})",
                             f"{statistics.median(waits):.1f} s",
                             f"≤ {budget:.1f} s (D·1.2 + 2 pauses)"))
                if delay == 2.0:
                    served = start_serve(emu, url, policy, Path(tmp) / "serve.log")
                    try:
                        def ready(s: Served = served) -> bool:
                            return s.get("/readyz").status_code == 200

                        wait_for(ready, 60, "serve ready")
                        time.sleep(3)
                        rows.append(("rotator serve idle RSS", f"{rss_mb(served.proc.pid):.0f} MB",
                                     ""))
                    finally:
                        served.stop()
    print(json.dumps(rows))
    print()
    for name, value, goal in rows:
        print(f"| {name} | {value} | {goal} |")


if __name__ == "__main__":
    main()
