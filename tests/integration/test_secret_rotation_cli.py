"""`rotator rotate` as a real process, real SDKs over HTTPS, real databases."""

from __future__ import annotations

import json
from pathlib import Path

from rotator.emulator.runner import RunningEmulator
from tests.support.emulated import (
    consumer_latest,
    make_app,
    rotator_env,
    run_rotator,
    token_works,
    write_policy,
)
from tests.support.invariants import assert_app_invariants


def test_rotate_proves_promotes_and_retires(emu: RunningEmulator, database_url: str,
                                            tmp_path: Path) -> None:
    app = make_app(emu)
    env = rotator_env(emu, database_url, write_policy(tmp_path / "p.toml", [app]))
    run = run_rotator(["rotate", "--app", app.app_id, "--retire-now", "--json"], env)
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    assert out["state"] == "completed" and out["old_key_id"] == app.old_key_id
    passwords = emu.tenant.passwords(app.app_id)
    assert [p.key_id for p in passwords] == [out["new_key_id"]]  # old one retired
    latest = consumer_latest(emu, app)
    assert latest is not None and latest.version == out["secret_version"]
    assert latest.content_type == "text/plain"
    assert latest.tags["key_id"] == out["new_key_id"]
    assert latest.tags["rotation_id"] == out["rotation_id"]
    assert latest.exp is not None
    assert token_works(emu, app.app_id, latest.value)
    # the audit trail has every step, in order
    hist = run_rotator(["history", "--app", app.app_id, "--json"], env)
    steps = [e["step"] for e in json.loads(hist.stdout)]
    for expected in ("plan", "create", "stage", "verify", "promote", "retire"):
        assert expected in steps
    assert steps.index("verify") < steps.index("promote") < steps.index("retire")
    # no secret value in output, logs or the database
    for text in (run.stdout, run.stderr, hist.stdout, hist.stderr):
        assert latest.value not in text and app.old_secret not in text
        assert "CANARY" not in text
    assert_app_invariants(emu, app, database_url)


def test_grace_period_keeps_the_old_secret(emu: RunningEmulator, tmp_path: Path) -> None:
    app = make_app(emu)
    db = f"sqlite:///{tmp_path / 'r.db'}"
    env = rotator_env(emu, db, write_policy(tmp_path / "p.toml", [app]))
    run = run_rotator(["rotate", "--app", app.app_id, "--json"], env)
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    assert out["state"] == "promoted" and out["retire_after"]
    assert {p.key_id for p in emu.tenant.passwords(app.app_id)} == {
        app.old_key_id, out["new_key_id"]}
    status = json.loads(run_rotator(["status", "--json"], env).stdout)
    assert [r["rotation_id"] for r in status["in_flight"]] == [out["rotation_id"]]
    # running it again resumes the same rotation; with --retire-now it finishes it
    again = run_rotator(["rotate", "--app", app.app_id, "--retire-now", "--json"], env)
    assert again.returncode == 0, again.stderr
    done = json.loads(again.stdout)
    assert done["rotation_id"] == out["rotation_id"] and done["state"] == "completed"
    assert_app_invariants(emu, app, db)


def test_dry_run_changes_nothing(emu: RunningEmulator, tmp_path: Path) -> None:
    app = make_app(emu)
    db = f"sqlite:///{tmp_path / 'r.db'}"
    env = rotator_env(emu, db, write_policy(tmp_path / "p.toml", [app]))
    run = run_rotator(["rotate", "--app", app.app_id, "--dry-run"], env)
    assert run.returncode == 0, run.stderr
    assert "nothing was changed" in run.stdout and app.old_key_id in run.stdout
    assert [p.key_id for p in emu.tenant.passwords(app.app_id)] == [app.old_key_id]
    assert consumer_latest(emu, app) is None


def test_scan_lists_every_credential_and_flags_managed(emu: RunningEmulator,
                                                       tmp_path: Path) -> None:
    app = make_app(emu, days_left=3)
    db = f"sqlite:///{tmp_path / 'r.db'}"
    env = rotator_env(emu, db, write_policy(tmp_path / "p.toml", [app]))
    run = run_rotator(["scan", "--json", "--within-days", "5"], env)
    assert run.returncode == 0, run.stderr
    body = json.loads(run.stdout)
    assert body["scan"]["status"] == "succeeded"
    mine = [c for c in body["credentials"] if c["app_id"] == app.app_id]
    assert len(mine) == 1 and mine[0]["managed"] is True and mine[0]["kind"] == "secret"
    assert set(mine[0]) >= {"app_id", "object_id", "display_name", "key_id", "kind",
                            "end_date_time", "days_left", "managed"}
    assert mine[0]["end_date_time"].endswith("Z") and 2 < mine[0]["days_left"] <= 3
    assert all(c["days_left"] is None or c["days_left"] <= 5 for c in body["credentials"])
    human = run_rotator(["scan"], env)
    assert human.returncode == 0 and "MANAGED" in human.stdout


def test_a_failed_scan_never_looks_clean(emu: RunningEmulator, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'r.db'}"
    env = rotator_env(emu, db, None)
    emu.faults.update({"error_rates": {"graph.list": {"500": 1.0}}})
    run = run_rotator(["scan", "--json"], env)
    assert run.returncode == 1
    assert json.loads(run.stdout)["scan"]["status"] == "failed"
    assert "not complete" in run.stderr
