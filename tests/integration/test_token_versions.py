"""verify through azure-identity against an API that asks for v2 tokens (azp/azpacr)
and one left as the portal makes it (v1: appid/appidacr), for a secret and a
certificate: `rotator rotate` proves the new credential from either shape."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rotator.emulator.runner import RunningEmulator
from tests.support.certs import make_cert_app, policy_file
from tests.support.emulated import make_app, rotator_env, run_rotator, write_policy
from tests.support.invariants import assert_app_invariants, assert_tenant_invariants

SCOPES = {"v1": "api://myapis/mywebapi", "v2": "api://myapis/myv2api"}
API_NAMES = {"v1": "mywebapi", "v2": "myv2api"}


def _grant(emu: RunningEmulator, client_app_id: str, version: str) -> None:
    api = emu.tenant.app_by_display_name(API_NAMES[version])
    emu.tenant.grant_app_role(client_app_id, api.app_id, "ReadOnly")


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_a_secret_rotation_is_verified_on_either_token_version(
    emu: RunningEmulator, tmp_path: Path, version: str
) -> None:
    app = make_app(emu)
    _grant(emu, app.app_id, version)
    database = f"sqlite:///{tmp_path / 'r.db'}"
    policy = write_policy(tmp_path / "p.toml", [app], verify_successes=2,
                          verify_scope=f'"{SCOPES[version]}/.default"',
                          expected_roles='["ReadOnly"]')
    run = run_rotator(["rotate", "--app", app.app_id, "--retire-now", "--json"],
                      rotator_env(emu, database, policy))
    assert run.returncode == 0, run.stderr[-3000:]
    assert json.loads(run.stdout)["state"] == "completed"
    assert_app_invariants(emu, app, database, outputs=[run.stdout, run.stderr])


def test_a_certificate_rotation_is_verified_on_a_v2_token(
    emu: RunningEmulator, tmp_path: Path
) -> None:
    app = make_cert_app(emu, unknown=1)
    _grant(emu, app.app_id, "v2")
    policy = policy_file(tmp_path / "p.toml", app)
    policy.write_text(policy.read_text().replace(
        "[[app]]", f'verify_scope = "{SCOPES["v2"]}/.default"\n[[app]]'))
    database = f"sqlite:///{tmp_path / 'r.db'}"
    run = run_rotator(["rotate", "--app", app.app_id, "--retire-now", "--json"],
                      rotator_env(emu, database, policy))
    assert run.returncode == 0, run.stderr[-3000:]
    out = json.loads(run.stdout)
    assert out["state"] == "completed" and out["kind"] == "certificate"
    assert_tenant_invariants(emu, database, [app.managed], outputs=[run.stdout, run.stderr])
