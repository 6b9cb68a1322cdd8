"""Tenant app management policies, set by the tenant administrator through Graph, met by
``rotator rotate`` through the real SDKs."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from rotator.adapters.sdk_clients import sync_secret_credential
from rotator.emulator.runner import RunningEmulator
from rotator.emulator.tenant import GRAPH_APP_ID
from tests.support.emulated import (
    ManagedApp,
    Run,
    consumer_latest,
    make_app,
    rotator_env,
    run_rotator,
    token_works,
    write_policy,
)
from tests.support.invariants import assert_app_invariants


def rotate(emu: RunningEmulator, tmp_path: Path, app: ManagedApp, **defaults: object) -> Run:
    policy = write_policy(tmp_path / "p.toml", [app], **defaults)
    env = rotator_env(emu, f"sqlite:///{tmp_path / 'r.db'}", policy)
    return run_rotator(["rotate", "--app", app.app_id, "--retire-now", "--json"], env)


def untouched(emu: RunningEmulator, app: ManagedApp) -> None:
    assert [p.key_id for p in emu.tenant.passwords(app.app_id)] == [app.old_key_id]
    assert consumer_latest(emu, app) is None


@pytest.fixture
def admin(emu: RunningEmulator) -> Iterator[httpx.Client]:
    """Graph as the tenant administrator (EMULATOR_ADMIN_* from the env file)."""
    env = emu.env
    credential = sync_secret_credential(
        env["AZURE_TENANT_ID"], env["EMULATOR_ADMIN_CLIENT_ID"],
        env["EMULATOR_ADMIN_CLIENT_SECRET"], authority_host=env["ROTATOR_AUTHORITY_HOST"],
        ca_bundle=env["ROTATOR_CA_BUNDLE"])
    token = credential.get_token("https://graph.microsoft.com/.default").token
    credential.close()
    with httpx.Client(base_url=env["ROTATOR_GRAPH_URL"] + "/", verify=env["ROTATOR_CA_BUNDLE"],
                      headers={"authorization": f"Bearer {token}"}, timeout=30) as client:
        yield client
        client.patch("policies/defaultAppManagementPolicy", json={
            "isEnabled": False,
            "applicationRestrictions": {"passwordCredentials": [], "keyCredentials": []}})


def _password_lifetime(days: int) -> dict[str, Any]:
    return {"restrictionType": "passwordLifetime", "maxLifetime": f"P{days}D"}


def _assign(admin: httpx.Client, app: ManagedApp, restrictions: list[dict[str, Any]]) -> str:
    created = admin.post("policies/appManagementPolicies", json={
        "displayName": "secrets policy", "description": "test", "isEnabled": True,
        "restrictions": {"passwordCredentials": restrictions, "keyCredentials": []}})
    assert created.status_code == 201, created.text
    policy_id = str(created.json()["id"])
    ref = admin.post(f"applications/{app.object_id}/appManagementPolicies/$ref",
                     json={"@odata.id": f"{admin.base_url}policies/appManagementPolicies/"
                                        f"{policy_id}"})
    assert ref.status_code == 204, ref.text
    return policy_id


def _new_secret_days(emu: RunningEmulator, app: ManagedApp) -> float:
    (new,) = [p for p in emu.tenant.passwords(app.app_id) if p.key_id != app.old_key_id]
    return (new.end - new.start) / timedelta(days=1)


def _completed_with_30_days(emu: RunningEmulator, app: ManagedApp, tmp_path: Path,
                            run_stderr: str, run_stdout: str, returncode: int) -> None:
    assert returncode == 0, run_stderr[-3000:]
    assert json.loads(run_stdout)["state"] == "completed"
    assert 29.9 < _new_secret_days(emu, app) <= 30
    assert "capped at 30 days instead of 180" in run_stderr
    latest = consumer_latest(emu, app)
    assert latest is not None and token_works(emu, app.app_id, latest.value)
    assert_app_invariants(emu, app, f"sqlite:///{tmp_path / 'r.db'}")


def test_tenant_max_caps_a_longer_lifetime_and_says_why(
        emu: RunningEmulator, admin: httpx.Client, tmp_path: Path) -> None:
    response = admin.patch("policies/defaultAppManagementPolicy", json={
        "isEnabled": True,
        "applicationRestrictions": {"passwordCredentials": [_password_lifetime(30)]}})
    assert response.status_code == 204, response.text
    app = make_app(emu)
    run = rotate(emu, tmp_path, app, lifetime_days=180)
    _completed_with_30_days(emu, app, tmp_path, run.stderr, run.stdout, run.returncode)
    assert "00000000-0000-0000-0000-000000000000" in run.stderr  # the policy is named


def test_without_policy_read_the_refusal_leads_to_the_same_cap(
        emu: RunningEmulator, admin: httpx.Client, tmp_path: Path) -> None:
    app = make_app(emu)
    policy_id = _assign(admin, app, [_password_lifetime(30)])
    # The one behaviour turned off here: the rotator's identity may not read policies.
    emu.tenant.revoke_app_role(emu.tenant.rotator_app_id, GRAPH_APP_ID, "Policy.Read.All")
    try:
        run = rotate(emu, tmp_path, app, lifetime_days=180)
    finally:
        emu.tenant.grant_app_role(emu.tenant.rotator_app_id, GRAPH_APP_ID, "Policy.Read.All")
    _completed_with_30_days(emu, app, tmp_path, run.stderr, run.stdout, run.returncode)
    assert policy_id in run.stderr


def test_blocked_password_addition_refuses_and_creates_nothing(
        emu: RunningEmulator, admin: httpx.Client, tmp_path: Path) -> None:
    app = make_app(emu)
    policy_id = _assign(admin, app, [{"restrictionType": "passwordAddition"}])
    run = rotate(emu, tmp_path, app)
    assert run.returncode == 1
    out = json.loads(run.stdout)
    assert out["state"] == "failed"
    assert policy_id in out["error"] and "certificate" in out["error"]
    untouched(emu, app)


async def test_findings_flag_credentials_that_outlive_the_policy_in_force(
        emu: RunningEmulator, admin: httpx.Client, tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from rotator.alerts.findings import FindingKind
    from rotator.alerts.runner import take_snapshot
    from rotator.bootstrap import engine_deps, load, open_store
    from rotator.engine.scan import scan

    end = datetime.now(UTC) + timedelta(days=400)
    restricted, free = (emu.tenant.create_app(f"it-long-{n}", secrets=[(f"{n}-value", end)])
                        for n in ("restricted", "free"))
    managed = ManagedApp(restricted.app_id, restricted.id,
                         restricted.display_name, "", "", "")
    policy_id = _assign(admin, managed, [_password_lifetime(30)])
    env = rotator_env(emu, f"sqlite:///{tmp_path / 'r.db'}", None)
    loaded = load(env)
    store = open_store(loaded.settings)
    try:
        async with engine_deps(loaded, store) as deps:
            report = await scan(deps)
            assert report.status == "succeeded", report.errors
            policies = await deps.directory.list_credential_policies()
        assert policies.for_app(restricted.id) is not None
        assert policies.for_app(free.id) is None  # the tenant default is not enabled
        snapshot = take_snapshot(store, loaded.policy, datetime.now(UTC), policies)
    finally:
        store.close()
    flagged = {f.app_id: f for f in snapshot.findings
               if f.kind is FindingKind.LIFETIME_OVER_APP_POLICY}
    assert restricted.app_id in flagged and free.app_id not in flagged
    message = flagged[restricted.app_id].message
    assert "400 days" in message and "30 days" in message and policy_id in message
    # The command does the same when the tenant is configured.
    run = run_rotator(["alerts", "run", "--json"], env)
    assert run.returncode == 0, run.stderr[-2000:]
    out = json.loads(run.stdout)
    assert out["findings"] >= 1 and out["notes"] == []
