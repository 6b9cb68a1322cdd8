"""``rotator rotate`` of apps open to personal Microsoft accounts (two secrets at most)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from rotator.emulator.runner import RunningEmulator
from tests.support.emulated import (
    CANARY,
    ManagedApp,
    Run,
    rotator_env,
    run_rotator,
    write_policy,
)
from tests.support.invariants import assert_app_invariants


def _personal_app(emu: RunningEmulator, second_days: float) -> tuple[ManagedApp, str]:
    name = f"msa-{uuid.uuid4().hex[:8]}"
    now = datetime.now(UTC)
    value = f"{CANARY}-{uuid.uuid4().hex}"
    app = emu.tenant.create_app(
        name, sign_in_audience="AzureADandPersonalMicrosoftAccount",
        secrets=[(value, now + timedelta(days=10)),
                 (f"{CANARY}-{uuid.uuid4().hex}", now + timedelta(days=second_days))])
    first, second = emu.tenant.passwords(app.app_id)
    return ManagedApp(app.app_id, app.id, name, first.key_id, value, f"{name}-secret"), \
        second.key_id


def _rotate(emu: RunningEmulator, tmp_path: Path, app: ManagedApp) -> Run:
    policy = write_policy(tmp_path / "p.toml", [app])
    env = rotator_env(emu, f"sqlite:///{tmp_path / 'r.db'}", policy)
    return run_rotator(["rotate", "--app", app.app_id, "--retire-now", "--json"], env)


def test_an_expired_secret_is_removed_to_make_room(emu: RunningEmulator,
                                                   tmp_path: Path) -> None:
    app, expired = _personal_app(emu, second_days=-3)
    run = _rotate(emu, tmp_path, app)
    assert run.returncode == 0, run.stderr[-3000:]
    assert json.loads(run.stdout)["state"] == "completed"
    keys = [p.key_id for p in emu.tenant.passwords(app.app_id)]
    assert expired not in keys and app.old_key_id not in keys and len(keys) == 1
    assert f"removed expired secret {expired}" in run.stderr
    assert_app_invariants(emu, app, f"sqlite:///{tmp_path / 'r.db'}")


def test_two_valid_secrets_refuse_clearly(emu: RunningEmulator, tmp_path: Path) -> None:
    app, other = _personal_app(emu, second_days=90)
    run = _rotate(emu, tmp_path, app)
    assert run.returncode == 1
    out = json.loads(run.stdout)
    assert out["state"] == "failed" and "at most 2 client secrets" in out["error"]
    assert [p.key_id for p in emu.tenant.passwords(app.app_id)] == [app.old_key_id, other]
    assert emu.tenant.vault.versions(app.secret_name) == []
