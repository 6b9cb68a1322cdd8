"""`rotator serve` as a real process: rotates on schedule, serves its endpoints, survives a
database outage and Graph errors, and stops cleanly on SIGTERM (leaving verify resumable)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from rotator.config import load_policy, load_settings
from rotator.domain.states import RotationState
from rotator.emulator.invariants import check_tenant, managed_apps
from rotator.emulator.runner import RunningEmulator
from tests.support.databases import set_connections_allowed
from tests.support.serve import (
    make_due_apps,
    open_store,
    start_serve,
    wait_for,
    write_policy,
)

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


def test_serve_rotates_survives_outages_and_stops_cleanly(
    emu: RunningEmulator, pg_url: str, tmp_path: Path
) -> None:
    apps = make_due_apps(emu, 6, "serve")
    late = make_due_apps(emu, 1, "serve-late")  # managed, but its secret is made due later
    stuck = make_due_apps(emu, 1, "serve-stuck")
    for app, _ in late + stuck:  # not due yet: a one-year secret replaces the due one
        make_not_due(emu, app.app_id)
    ids = [a.app_id for a, _ in apps + late + stuck]
    policy_path = write_policy(tmp_path / "policy.toml", emu.base_url, ids)
    policy = load_policy(policy_path, load_settings(dict(emu.env)))
    store = open_store(pg_url)
    served = start_serve(emu, pg_url, policy_path, tmp_path / "serve.log")
    try:
        # -- rotates on schedule, serves the three endpoints
        assert served.get("/healthz").status_code == 200
        wait_for(lambda: served.get("/readyz").status_code == 200, 30, "ready")
        first = [a.app_id for a, _ in apps]

        def all_completed(app_ids: list[str]) -> bool:
            for app_id in app_ids:
                latest = store.list_rotations(app_id=app_id, limit=1)
                if not latest or latest[0].state is not RotationState.COMPLETED:
                    return False
            return True

        wait_for(lambda: all_completed(first), 60, "the due apps to rotate")
        metrics = served.get("/metrics").text
        assert re.search(r'rotator_rotations_total\{result="completed"\} 6\.0', metrics)
        assert 'rotator_credential_expiry_timestamp_seconds{app_id="' in metrics
        assert 'rotator_requests_total{operation="add_password",service="graph",status="ok"}' \
            in metrics
        assert "rotator_last_successful_scan_timestamp_seconds" in metrics

        # -- database outage: not ready, still alive, ready again afterwards
        set_connections_allowed(pg_url, False)
        try:
            wait_for(lambda: served.get("/readyz").status_code == 503, 30, "not ready")
            body = served.get("/readyz").json()
            assert "database" in body["reason"]
            assert served.get("/healthz").status_code == 200
            wait_for(lambda: "job failed" in served.log(), 30, "a job to fail")
            assert served.alive()
        finally:
            set_connections_allowed(pg_url, True)
        wait_for(lambda: served.get("/readyz").status_code == 200, 60, "ready after the outage")

        # -- Graph errors: the scan fails (not ready), the service lives on and recovers
        emu.faults.update({"error_rates": {"graph.*": {503: 1.0}}})
        try:
            wait_for(lambda: "last scan failed" in served.get("/readyz").text, 90,
                     "a failed scan to show")
            assert served.alive()
        finally:
            emu.faults.update({"error_rates": {}})
        for app, _ in late:  # now due; found by the next scan
            make_due(emu, app.app_id)
        wait_for(lambda: served.get("/readyz").status_code == 200, 90, "ready after Graph errors")
        wait_for(lambda: all_completed([a.app_id for a, _ in late]), 60, "the late app to rotate")

        # -- SIGTERM during verify: exit 0, the rotation stays staged with its lease released
        emu.tenant.propagation_seconds = 3600.0  # the new secret never propagates
        stuck_id = stuck[0][0].app_id
        make_due(emu, stuck_id)

        def staged() -> bool:
            latest = store.list_rotations(app_id=stuck_id, limit=1)
            return bool(latest) and latest[0].state is RotationState.STAGED

        wait_for(staged, 60, "a rotation to sit in verify")
        assert served.stop() == 0
    finally:
        emu.tenant.propagation_seconds = 0.0
        emu.faults.update({"error_rates": {}})
        if served.alive():
            served.proc.kill()
            served.proc.wait()
    rotation = store.list_rotations(app_id=stuck_id, limit=1)[0]
    assert rotation.state is RotationState.STAGED
    assert rotation.lease_owner is None
    log = served.log()
    assert "rotator stopped" in log
    # -- the world is consistent, and no secret value was ever logged
    done = policy.apps.keys() - {stuck_id}
    problems = check_tenant(emu.tenant, store,
                            [m for m in managed_apps(policy) if m.app_id in done])
    assert problems == []
    for value in [v for _, v in apps + late + stuck] + secrets_seen:
        assert value not in log
    for app_id in done:
        for cred in emu.tenant.passwords(app_id):
            assert cred.secret_text not in log
    store.close()


secrets_seen: list[str] = []


def _replace_secret(emu: RunningEmulator, app_id: str, days: float) -> None:
    from datetime import UTC, datetime, timedelta

    from rotator.emulator.tenant import make_secret_text

    app = emu.tenant.find_app(app_id=app_id)
    old = emu.tenant.passwords(app_id)
    value = make_secret_text()
    secrets_seen.append(value)
    emu.tenant.add_secret(app.id, value, datetime.now(UTC) + timedelta(days=days))
    for cred in old:
        emu.tenant.remove_password(app.id, cred.key_id)


def make_not_due(emu: RunningEmulator, app_id: str) -> None:
    _replace_secret(emu, app_id, 365)


def make_due(emu: RunningEmulator, app_id: str) -> None:
    _replace_secret(emu, app_id, 5)
