"""Read-only commands as fresh processes: `rotator status`, `rotator history` and
`rotator --help` against `python -c pass`, side by side in one run.

Each database (SQLite, then PostgreSQL) is populated first: a scan of an emulated
tenant of N apps (the inventory), then a few rotations of managed apps (rotations and
the audit trail). The timed runs are interleaved, one of each command per round, so
the machine's load falls on all of them alike; the figures are the medians of the rounds:
wall time, and CPU time (user + system), which a loaded machine inflates far less.

    .venv/bin/python -m tests.benchmarks.bench_commands --apps 2000 --runs 9

``--before DIR`` also times `status` and `history` from another source tree (say
``git archive <rev> rotator migrations | tar -x -C DIR``), in the same rounds.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rotator.emulator.runner import start_emulator
from tests.support.databases import throwaway_pg_database
from tests.support.serve import make_due_apps, write_policy

GOAL_S = 0.3
MANAGED = 5
ROTATED = 3

# name, the interpreter's arguments, and PYTHONPATH (another source tree) or None.
Command = tuple[str, list[str], str | None]
COMMANDS: list[Command] = [
    ("python -c pass", ["-c", "pass"], None),
    ("rotator --help", ["-m", "rotator", "--help"], None),
    ("rotator status", ["-m", "rotator", "status"], None),
    ("rotator status --json", ["-m", "rotator", "status", "--json"], None),
    ("rotator history", ["-m", "rotator", "history"], None),
]
WITH_GOAL = ("rotator status", "rotator status --json", "rotator history")


def rotator(args: list[str], env: dict[str, str]) -> None:
    subprocess.run([sys.executable, "-m", "rotator", *args], env=env, check=True,
                   capture_output=True, timeout=900)


def populate(env: dict[str, str], app_ids: list[str]) -> None:
    """Migrations, the inventory, and an audit trail, all outside the timing."""
    rotator(["db", "upgrade"], env)
    rotator(["scan", "--json", "--within-days", "-36500"], env)
    for app_id in app_ids[:ROTATED]:
        rotator(["rotate", "--app", app_id, "--retire-now"], env)


def commands(before: str | None) -> list[Command]:
    if before is None:
        return COMMANDS
    return [*COMMANDS, *((f"{name} [before]", args, before)
                         for name, args, _ in COMMANDS if name in WITH_GOAL)]


def timed(args: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU seconds of one fresh process, which must succeed."""
    start = time.perf_counter()
    with open(os.devnull, "wb") as out:
        proc = subprocess.Popen([sys.executable, *args], env=env, stdout=out,
                                stderr=subprocess.DEVNULL)
        _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(args)} failed")
    return wall, usage.ru_utime + usage.ru_stime


def timings(env: dict[str, str], runs: int, table: list[Command]
            ) -> dict[str, list[tuple[float, float]]]:
    times: dict[str, list[tuple[float, float]]] = {name: [] for name, _, _ in table}
    for _ in range(runs):
        for name, args, path in table:
            times[name].append(timed(args, env if path is None else {**env, "PYTHONPATH": path}))
    return times


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--apps", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=9, help="fresh processes per command")
    parser.add_argument("--before", metavar="DIR", default=None,
                        help="a source tree whose status and history run side by side")
    args = parser.parse_args()
    table = commands(args.before)
    rows: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory() as tmp, \
            start_emulator(apps=args.apps, workdir=Path(tmp) / "emu") as emu, \
            throwaway_pg_database() as pg_url:
        apps = make_due_apps(emu, MANAGED, "bench-cmd")
        app_ids = [app.app_id for app, _ in apps]
        policy = write_policy(Path(tmp) / "policy.toml", emu.env["ROTATOR_VAULT_URL"], app_ids)
        for db, url in (("sqlite", f"sqlite:///{tmp}/r.db"), ("postgresql", pg_url)):
            env = {**os.environ, "ROTATOR_ENV_FILE": str(emu.env_file),
                   "ROTATOR_DATABASE_URL": url, "ROTATOR_CONFIG": str(policy),
                   "NO_COLOR": "1"}
            env.pop("ROTATOR_LOG_LEVEL", None)
            populate(env, app_ids)
            before = load_average()
            times = timings(env, args.runs, table)
            after = load_average()
            base = statistics.median(w for w, _ in times["python -c pass"])
            for name, _, _ in table:
                wall = statistics.median(w for w, _ in times[name])
                rows.append({"db": db, "command": name, "wall_s": round(wall, 3),
                             "min_wall_s": round(min(w for w, _ in times[name]), 3),
                             "cpu_s": round(statistics.median(c for _, c in times[name]), 3),
                             "wall_over_baseline_s": round(wall - base, 3),
                             "load": f"{before} -> {after}"})
                print(json.dumps(rows[-1]), flush=True)
    print(f"\n{args.apps} apps in the inventory, {ROTATED} rotations in the audit trail; "
          f"median of {args.runs} fresh processes each, interleaved")
    print(f"{'db':<11} {'command':<31} {'wall s':>7} {'min s':>6} {'CPU s':>6} "
          f"{'wall - pass':>11} {'goal':>5}  load average (before -> after)")
    for r in rows:
        goal = f"<{GOAL_S}" if r["command"] in WITH_GOAL else ""
        print(f"{r['db']:<11} {r['command']:<31} {r['wall_s']:>7} {r['min_wall_s']:>6} "
              f"{r['cpu_s']:>6} {r['wall_over_baseline_s']:>11} {goal:>5}  {r['load']}")


if __name__ == "__main__":
    main()
