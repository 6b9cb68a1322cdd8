"""All benchmarks, one after the other: `.venv/bin/python -m tests.benchmarks`.

Each prints its own table; together they take a few minutes on 2 cores.
"""

from __future__ import annotations

import subprocess
import sys

BENCHMARKS = [
    ["tests.benchmarks.bench_scan", "--apps", "20000", "100000"],
    ["tests.benchmarks.bench_rotation", "--apps", "1000", "--budget", "1200"],
    ["tests.benchmarks.bench_responsiveness"],
    ["tests.benchmarks.bench_commands", "--apps", "2000", "--runs", "9"],
    ["tests.benchmarks.bench_metrics", "--apps", "20000", "100000"],
]


def main() -> None:
    failed = 0
    for module, *args in BENCHMARKS:
        print(f"\n## {module.rsplit('.', 1)[-1]}\n", flush=True)
        failed |= subprocess.run([sys.executable, "-m", module, *args], check=False).returncode
    raise SystemExit(1 if failed else 0)


if __name__ == "__main__":
    main()
