"""Each refusal: a clear message, the right exit code, nothing half-done."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

from rotator.emulator.runner import RunningEmulator
from tests.support.emulated import (
    ManagedApp,
    Run,
    consumer_latest,
    make_app,
    rotator_env,
    run_rotator,
    write_policy,
)
from tests.support.invariants import assert_app_invariants


def rotate(emu: RunningEmulator, tmp_path: Path, app: ManagedApp, *, policy_apps=None,  # type: ignore[no-untyped-def]
           **defaults: object) -> Run:
    policy = write_policy(tmp_path / "p.toml", policy_apps if policy_apps is not None else [app],
                          **defaults)
    env = rotator_env(emu, f"sqlite:///{tmp_path / 'r.db'}", policy)
    return run_rotator(["rotate", "--app", app.app_id, "--retire-now", "--json"], env)


def untouched(emu: RunningEmulator, app: ManagedApp) -> None:
    assert [p.key_id for p in emu.tenant.passwords(app.app_id)] == [app.old_key_id]
    assert consumer_latest(emu, app) is None


def test_unknown_app(emu: RunningEmulator, tmp_path: Path) -> None:
    ghost = ManagedApp(str(uuid.uuid4()), "x", "ghost", "k", "v", "ghost-secret")
    run = rotate(emu, tmp_path, ghost)
    assert run.returncode == 2
    assert "no app registration" in run.stderr and ghost.app_id in run.stderr


def test_unmanaged_app(emu: RunningEmulator, tmp_path: Path) -> None:
    app, other = make_app(emu), make_app(emu)
    run = rotate(emu, tmp_path, app, policy_apps=[other])
    assert run.returncode == 2 and "not managed" in run.stderr and "[[app]]" in run.stderr
    untouched(emu, app)


def test_not_owner(emu: RunningEmulator, tmp_path: Path) -> None:
    app = make_app(emu, owned=False)
    run = rotate(emu, tmp_path, app)
    assert run.returncode == 1
    out = json.loads(run.stdout)
    assert out["state"] == "failed" and "Authorization_RequestDenied" in out["error"]
    untouched(emu, app)


def test_bad_config_names_the_key(emu: RunningEmulator, tmp_path: Path) -> None:
    app = make_app(emu)
    run = rotate(emu, tmp_path, app, lifetime_dayz=90)
    assert run.returncode == 2 and "lifetime_dayz" in run.stderr and "lifetime_days" in run.stderr
    untouched(emu, app)


def test_bad_key_vault_name(emu: RunningEmulator, tmp_path: Path) -> None:
    app = make_app(emu)
    app.secret_name = "bad_name!"
    run = rotate(emu, tmp_path, app)
    assert run.returncode == 2 and "secret_name" in run.stderr
    untouched(emu, app)


def test_verification_that_never_succeeds_rolls_back(emu: RunningEmulator,
                                                     tmp_path: Path) -> None:
    app = make_app(emu)
    before = emu.tenant.propagation_seconds
    emu.tenant.propagation_seconds = 3600  # the new secret never reaches any replica
    try:
        run = rotate(emu, tmp_path, app, verify_timeout_seconds=4)
    finally:
        emu.tenant.propagation_seconds = before
    assert run.returncode == 1
    out = json.loads(run.stdout)
    assert out["state"] == "failed" and "consecutive tokens" in out["error"]
    assert "AADSTS7000215" in out["error"]
    untouched(emu, app)
    assert_app_invariants(emu, app, f"sqlite:///{tmp_path / 'r.db'}", allow_no_consumer=True)


def test_verify_scope_of_an_unknown_resource_fails_fast(emu: RunningEmulator,
                                                        tmp_path: Path) -> None:
    app = make_app(emu)
    run = rotate(emu, tmp_path, app, verify_scope='"api://nothing-here/.default"')
    assert run.returncode == 1
    out = json.loads(run.stdout)
    assert out["state"] == "failed" and "AADSTS500011" in out["error"]
    untouched(emu, app)


def test_missing_expected_role_reports_admin_consent(emu: RunningEmulator,
                                                     tmp_path: Path) -> None:
    client = emu.tenant.app_by_display_name("myclient-noconsent")
    app = ManagedApp(client.app_id, client.id, "myclient-noconsent",
                     emu.tenant.passwords(client.app_id)[0].key_id,
                     emu.tenant.secret_of("myclient-noconsent"), "noconsent-secret")
    policy = tmp_path / "p.toml"
    policy.write_text(
        "[defaults]\nverify_successes = 1\n[[app]]\n"
        f'app_id = "{app.app_id}"\nsecret_name = "noconsent-secret"\n'
        'verify_scope = "api://myapis/mywebapi/.default"\nexpected_roles = ["ReadOnly"]\n')
    env = rotator_env(emu, f"sqlite:///{tmp_path / 'r.db'}", policy)
    run = run_rotator(["rotate", "--app", app.app_id, "--retire-now", "--json"], env)
    assert run.returncode == 1
    out = json.loads(run.stdout)
    assert out["state"] == "failed" and "ReadOnly" in out["error"]
    assert "admin consent" in out["error"]
    untouched(emu, app)


def test_throttling_is_waited_out(emu: RunningEmulator, tmp_path: Path) -> None:
    app = make_app(emu)
    emu.faults.update({"throttle_app_capacity": 1, "throttle_app_refill_per_second": 0.5})
    run = rotate(emu, tmp_path, app)
    assert run.returncode == 0, run.stderr[-2000:]
    assert json.loads(run.stdout)["state"] == "completed"
    assert_app_invariants(emu, app, f"sqlite:///{tmp_path / 'r.db'}")
