"""The database goes away in the middle of `rotator rotate`: a clear error, then a resume."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rotator.adapters.db import SqlStore, make_engine, migrate
from rotator.domain.states import RotationState
from rotator.emulator.runner import RunningEmulator
from tests.support.databases import set_connections_allowed, throwaway_pg_database
from tests.support.emulated import (
    consumer_latest,
    make_app,
    rotator_env,
    run_rotator,
    token_works,
    write_policy,
)
from tests.support.invariants import assert_app_invariants

pytestmark = pytest.mark.postgres


@pytest.fixture
def own_pg() -> Iterator[str]:
    with throwaway_pg_database() as url:
        migrate.upgrade(url)
        yield url


def _state(url: str, app_id: str) -> RotationState | None:
    store = SqlStore(make_engine(url))
    try:
        latest = store.list_rotations(app_id=app_id, limit=1)
        return latest[0].state if latest else None
    finally:
        store.close()


def test_database_outage_mid_rotation_stops_cleanly_and_the_rerun_resumes(
    emu: RunningEmulator, own_pg: str, tmp_path: Path
) -> None:
    app = make_app(emu)
    # Eight consecutive tokens, about a second apart: the rotation sits in verify a while.
    policy = write_policy(tmp_path / "p.toml", [app], verify_successes=8,
                          verify_timeout_seconds=120)
    env = rotator_env(emu, own_pg, policy)
    proc = subprocess.Popen(
        [sys.executable, "-m", "rotator", "rotate", "--app", app.app_id, "--retire-now"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while _state(own_pg, app.app_id) is not RotationState.STAGED:
            assert time.monotonic() < deadline and proc.poll() is None, proc.stderr
            time.sleep(0.2)
        set_connections_allowed(own_pg, False)
        try:
            out, err = proc.communicate(timeout=60)
        finally:
            set_connections_allowed(own_pg, True)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1, err[-2000:]
    assert "Traceback" not in err and "database" in err and "run the command again" in err
    assert _state(own_pg, app.app_id) is RotationState.STAGED
    assert_app_invariants(emu, app, own_pg, allow_in_flight=True, allow_no_consumer=True,
                          outputs=[out, err])

    again = run_rotator(["rotate", "--app", app.app_id, "--retire-now", "--json"], env)
    assert again.returncode == 0, again.stderr[-2000:]
    result = json.loads(again.stdout)
    assert result["state"] == "completed"
    latest = consumer_latest(emu, app)
    assert latest is not None and token_works(emu, app.app_id, latest.value)
    assert [p.key_id for p in emu.tenant.passwords(app.app_id)] == [result["new_key_id"]]
    for text in (out, err, again.stdout, again.stderr):
        assert app.old_secret not in text and latest.value not in text
    assert_app_invariants(emu, app, own_pg, outputs=[out, err, again.stdout, again.stderr])
