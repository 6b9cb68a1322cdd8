"""The crash matrix in the regular suite: its lists proven against real runs, and the
fast subset of cases on SQLite and PostgreSQL (all of it: `python -m tests.campaign.run`).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from rotator.emulator.runner import RunningEmulator
from rotator.failpoints import POINTS
from tests.campaign.crash_matrix import PATHS, Case, CrashPath, fast_cases, run_case, trace
from tests.support.emulated import make_app, rotator_env, run_rotator, write_policy

pytestmark = pytest.mark.slow


def test_the_paths_together_pass_every_failpoint() -> None:
    covered = {point for path in PATHS for point in path.points}
    assert covered == POINTS
    assert {p.kind for p in PATHS if "after:db.failed" in p.points} == {"secret", "certificate"}


@pytest.mark.parametrize("path", PATHS, ids=lambda p: p.name)
def test_each_path_lists_the_points_a_real_run_passes(
    emu: RunningEmulator, tmp_path: Path, path: CrashPath
) -> None:
    assert tuple(trace(emu, f"sqlite:///{tmp_path / 'r.db'}", tmp_path, path)) == path.points


@pytest.mark.parametrize("case", fast_cases(), ids=str)
def test_kill_at_a_failpoint_then_rerun_converges(
    emu: RunningEmulator, database_url: str, tmp_path: Path, case: Case
) -> None:
    run_case(emu, database_url, tmp_path, case)


def test_failpoints_are_inert_without_the_explicit_switch(
    emu: RunningEmulator, tmp_path: Path
) -> None:
    app = make_app(emu)
    db = f"sqlite:///{tmp_path / 'r.db'}"
    env = rotator_env(emu, db, write_policy(tmp_path / "p.toml", [app]),
                      ROTATOR_FAILPOINTS="after:graph.add_password=kill")
    run = run_rotator(["rotate", "--app", app.app_id, "--retire-now", "--json"], env)
    assert run.returncode == 0, run.stderr[-2000:]
