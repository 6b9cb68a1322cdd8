"""kill -9 after every external write, on SQLite and PostgreSQL: the next run converges.

The first `rotator rotate` dies by SIGKILL at a failpoint (no cleanup, lease left
behind); the invariants must already hold at that moment; a second run must
finish the same rotation and leave exactly the new credential, promoted.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from rotator.adapters.db import Store, make_engine
from rotator.domain.states import ACTIVE_STATES
from rotator.emulator.runner import RunningEmulator
from tests.integration.checks import assert_invariants, consumer_latest, token_works
from tests.integration.conftest import make_app, rotator_env, run_rotator, write_policy

POINTS = [
    "after:graph.add_password",  # create: the value exists only in the dying process
    "after:vault.set_secret.staging",  # stage: written, not recorded
    "after:token.success",  # verify: mid-way through the consecutive successes
    "after:vault.set_secret.consumer",  # promote: consumers have it, not recorded
    "after:vault.disable_version",  # promote: staging copy disabled, not recorded
    "after:graph.remove_password",  # retire: old one gone, not recorded
]


def active_ids(database_url: str) -> set[str]:
    store = Store(make_engine(database_url))
    try:
        return {r.id for r in store.list_rotations(states=ACTIVE_STATES)}
    finally:
        store.close()


@pytest.mark.parametrize("point", POINTS)
def test_kill_after_each_write_then_rerun_converges(
    emu: RunningEmulator, database_url: str, tmp_path: Path, point: str
) -> None:
    app = make_app(emu)
    policy = write_policy(tmp_path / "p.toml", [app], verify_successes=2)
    env = rotator_env(emu, database_url, policy)
    crashing = {**env, "ROTATOR_ENABLE_FAILPOINTS": "1", "ROTATOR_FAILPOINTS": f"{point}=kill"}

    first = run_rotator(["rotate", "--app", app.app_id, "--retire-now", "--json"], crashing)
    assert first.returncode == -signal.SIGKILL, (first.returncode, first.stderr[-2000:])
    assert_invariants(emu, app, database_url, active_rotation_ids=active_ids(database_url))

    second = run_rotator(["rotate", "--app", app.app_id, "--retire-now", "--json"], env)
    assert second.returncode == 0, second.stderr[-3000:]
    out = json.loads(second.stdout)
    assert out["state"] == "completed", out
    passwords = emu.tenant.passwords(app.app_id)
    assert [p.key_id for p in passwords] == [out["new_key_id"]]
    latest = consumer_latest(emu, app)
    assert latest is not None and latest.tags["key_id"] == out["new_key_id"]
    assert token_works(emu, app.app_id, latest.value)
    assert not active_ids(database_url) & {out["rotation_id"]}
    assert_invariants(emu, app, database_url)
    for text in (first.stdout, first.stderr, second.stdout, second.stderr):
        assert "CANARY" not in text and latest.value not in text


def test_failpoints_are_inert_without_the_explicit_switch(
    emu: RunningEmulator, tmp_path: Path
) -> None:
    app = make_app(emu)
    db = f"sqlite:///{tmp_path / 'r.db'}"
    env = rotator_env(emu, db, write_policy(tmp_path / "p.toml", [app]),
                      ROTATOR_FAILPOINTS="after:graph.add_password=kill")
    run = run_rotator(["rotate", "--app", app.app_id, "--retire-now", "--json"], env)
    assert run.returncode == 0, run.stderr[-2000:]
