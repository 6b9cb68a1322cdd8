"""Run the crash matrix (every case, or the fast subset) on SQLite and PostgreSQL.

Cases are independent (one app each, one SQLite file each), so a few run at once:
each is mostly waiting for processes and token propagation.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from rotator.adapters.db import migrate
from rotator.emulator.runner import start_emulator
from tests.campaign.crash_matrix import Case, run_case
from tests.support.databases import throwaway_pg_database

LEAK_WORDS = ("secret reached", "canary", "key material")


@dataclass
class MatrixStats:
    cases: int = 0
    killed_by: Counter[str] = field(default_factory=Counter)  # path kind -> SIGKILLs
    converged: int = 0
    invariants_broken: int = 0
    secrets_leaked: int = 0
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0


@contextlib.contextmanager
def _database(kind: str) -> Iterator[str | None]:
    if kind == "sqlite":
        yield None  # one file per case
        return
    with throwaway_pg_database() as url:
        migrate.upgrade(url)
        yield url


def run_matrix(cases: Sequence[Case], databases: Sequence[str], workers: int = 3,
               progress: bool = True) -> MatrixStats:
    stats = MatrixStats()
    started = time.perf_counter()
    # The emulator's realistic defaults stay on: 2 s of read-after-write lag, and removed
    # credentials that get tokens for up to the propagation time.
    with tempfile.TemporaryDirectory(prefix="crash-matrix-") as tmp, \
            start_emulator(apps=2, seed=17, propagation_seconds=1.0,
                           workdir=Path(tmp) / "emu") as emu:
        for kind in databases:
            with _database(kind) as shared_url:
                def one(index: int, case: Case, kind: str = kind,
                        shared_url: str | None = shared_url) -> tuple[Case, str | None]:
                    workdir = Path(tmp) / f"{kind}-{index}"
                    workdir.mkdir()
                    url = shared_url or f"sqlite:///{workdir / 'rotator.db'}"
                    try:
                        run_case(emu, url, workdir, case)
                    except AssertionError as exc:
                        return case, str(exc) or repr(exc)
                    except Exception as exc:  # a crash of the harness is a failed case too
                        return case, f"{type(exc).__name__}: {exc}"
                    return case, None

                with ThreadPoolExecutor(max_workers=workers) as pool:
                    for case, error in pool.map(lambda ic: one(*ic), enumerate(cases)):
                        stats.cases += 1
                        stats.killed_by[case.path.kind] += 1
                        if error is None:
                            stats.converged += 1
                        else:
                            stats.invariants_broken += 1
                            if any(w in error.lower() for w in LEAK_WORDS):
                                stats.secrets_leaked += 1
                            stats.failures.append(f"{kind} {case}: {error[:500]}")
                        if progress:
                            mark = "ok" if error is None else "BROKEN"
                            print(f"  {kind:10} {case!s:60} {mark}", flush=True)
    stats.seconds = time.perf_counter() - started
    return stats
