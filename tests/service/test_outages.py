"""Outages of each dependency under `rotator serve`, one at a time, mid-rotation.

Each test proves the same three things for one dependency: the rotation waits and
resumes (or rolls back) without ever promoting an unproven secret or leaving an app
without a working one; the process stays up; and /readyz tells the truth — not ready
while the database is gone, ready while only a rotation step's dependency is down
(that is the rotation's trouble, recorded on it and in the metrics, not the pod's).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from rotator.domain.states import RotationState
from rotator.emulator.invariants import check_tenant, managed_apps
from rotator.emulator.runner import RunningEmulator
from tests.service.scenario import Scenario
from tests.support.databases import set_connections_allowed
from tests.support.serve import (
    CredentialWatch,
    Served,
    finish_propagation,
    gets_token,
    wait_for,
)

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

NEVER = 3600.0  # propagation delay that outlasts any test: verify waits until released


@pytest.fixture(autouse=True)
def calm_tenant(emu: RunningEmulator) -> Iterator[None]:
    """Whatever a test broke in the shared emulated tenant is mended after it."""
    yield
    emu.faults.update({"error_rates": {}, "lost_response_rates": {}})
    emu.tenant.propagation_seconds = 0.0


def assert_ready_while(served: Served, seconds: float) -> dict[str, Any]:
    """Ready now and for ``seconds`` more: the outage belongs to the rotation, not the pod.
    Returns what /readyz last said about the dependencies."""
    deadline = time.monotonic() + seconds
    while True:
        response = served.get("/readyz")
        assert response.status_code == 200, response.text
        if time.monotonic() >= deadline:
            seen: dict[str, Any] = response.json()["dependencies"]
            return seen
        time.sleep(0.5)


def reported(served: Served, service: str) -> dict[str, Any]:
    """What /readyz says it last heard from ``service``."""
    seen: dict[str, Any] = served.get("/readyz").json()["dependencies"].get(service, {})
    return seen


def metric(served: Served, pattern: str) -> bool:
    return re.search(pattern, served.get("/metrics").text) is not None


# ------------------------------------------------------------------------------ tests


def test_key_vault_down_during_stage_waits_then_completes(
    emu: RunningEmulator, pg_url: str, tmp_path: Path
) -> None:
    s = Scenario(emu, pg_url, tmp_path, "kv-stage")
    # Writes first (the plan's read of the consumer secret works), so the rotation is
    # planned and its create step is what meets the outage; then the whole vault goes.
    emu.faults.update({"error_rates": {"vault.set": {503: 1.0}}})
    with CredentialWatch(emu, [s.app_id]) as watch, s.serve() as served:
        wait_for(lambda: s.rotation() is not None, 30, "the due rotation to be planned")
        emu.faults.update({"error_rates": {"vault.*": {503: 1.0}}})
        waiting = s.wait_error("Key Vault", 60, attempts=2)
        # It waits before staging: nothing staged, nothing promoted, the new secret that
        # could not be stored is already removed again, the consumer still holds the old one.
        assert waiting.state in (RotationState.PENDING, RotationState.CREATING)
        assert waiting.next_attempt_at is not None
        assert waiting.staging_version is None and waiting.consumer_version is None
        assert s.key_ids() == {s.old_key_id}
        s.consumers_still_served()
        vault = assert_ready_while(served, 2)["keyvault"]
        assert vault["status"] == "failing", vault
        assert vault["failing_operations"]["list_versions"]["last_status"] == "503"
        assert metric(served, r'rotator_requests_total\{operation="set_secret",'
                              r'service="keyvault",status="503"\} [1-9]')
        assert served.alive()
        emu.faults.update({"error_rates": {}})
        s.wait_state({RotationState.COMPLETED, RotationState.FAILED}, 60,
                     "the rotation to end after Key Vault is back")
        assert reported(served, "keyvault")["status"] == "ok"
        served.stop()
    s.finish(served, watch)
    s.close()


def test_key_vault_down_during_promote_waits_then_completes(
    emu: RunningEmulator, pg_url: str, tmp_path: Path
) -> None:
    s = Scenario(emu, pg_url, tmp_path, "kv-promote")
    emu.tenant.propagation_seconds = NEVER  # verify waits until the test releases it
    with CredentialWatch(emu, [s.app_id]) as watch, s.serve() as served:
        staged = s.wait_state({RotationState.STAGED}, 30, "the new secret to be staged")
        # Staging is done, so the only vault write left is the consumer secret's.
        emu.faults.update({"error_rates": {"vault.set": {503: 1.0}}})
        finish_propagation(emu, s.app_id)
        waiting = s.wait_error("Key Vault", 60)
        assert waiting.state is RotationState.VERIFIED, waiting
        assert waiting.consumer_version is None
        # waiting, not rolled back: both secrets on the app; consumers keep the old one
        assert s.key_ids() == {s.old_key_id, staged.new_key_id}
        s.consumers_still_served()
        vault = assert_ready_while(served, 2)["keyvault"]
        assert vault["failing_operations"]["set_secret"]["last_status"] == "503", vault
        assert "get_secret" not in vault["failing_operations"]
        assert served.alive()
        emu.faults.update({"error_rates": {}})
        s.wait_state({RotationState.COMPLETED, RotationState.FAILED}, 60,
                     "the rotation to end after Key Vault is back")
        assert reported(served, "keyvault")["status"] == "ok"
        served.stop()
    rotation = s.finish(served, watch)
    assert rotation.new_key_id == staged.new_key_id  # the verified secret, not a new one
    staging = {v.version: v for v in emu.tenant.vault.versions(f"{s.secret_name}-next")}
    assert not staging[str(rotation.staging_version)].enabled
    s.close()


def test_graph_down_during_retire_waits_then_removes_the_old_secret(
    emu: RunningEmulator, pg_url: str, tmp_path: Path
) -> None:
    s = Scenario(emu, pg_url, tmp_path, "graph-retire")
    # Nothing before retirement calls removePassword on the happy path.
    emu.faults.update({"error_rates": {"graph.removePassword": {503: 1.0}}})
    with CredentialWatch(emu, [s.app_id]) as watch, s.serve() as served:
        waiting = s.wait_error("Graph", 60, attempts=2)
        assert waiting.state in (RotationState.PROMOTED, RotationState.RETIRING), waiting
        assert waiting.new_key_id is not None
        # promoted and still waiting: consumers have the new secret, the old one stays
        assert s.consumer_key_id() == waiting.new_key_id
        assert s.key_ids() == {s.old_key_id, waiting.new_key_id}
        consumer = emu.tenant.vault.get(s.secret_name)
        assert gets_token(emu, s.app_id, consumer.value)
        assert gets_token(emu, s.app_id, s.old_value)  # still there for stragglers
        # Graph answers scans and reads, so it is degraded, not down: only removePassword fails
        graph = assert_ready_while(served, 2)["graph"]
        assert graph["status"] in ("degraded", "failing"), graph
        assert set(graph["failing_operations"]) == {"remove_password"}
        assert emu.faults.count_of("graph.removePassword", 503) >= 2
        assert served.alive()
        assert s.old_key_id in s.key_ids()
        recovered_at = datetime.now(UTC)
        emu.faults.update({"error_rates": {}})
        s.wait_state({RotationState.COMPLETED}, 60, "retirement to finish after Graph is back")
        assert reported(served, "graph")["status"] == "ok"
        served.stop()
    rotation = s.finish(served, watch)
    assert rotation.finished_at is not None and rotation.finished_at > recovered_at
    s.close()


def test_token_endpoint_5xx_during_verify_is_transient(
    emu: RunningEmulator, pg_url: str, tmp_path: Path
) -> None:
    s = Scenario(emu, pg_url, tmp_path, "token-verify")
    emu.tenant.propagation_seconds = NEVER
    with CredentialWatch(emu, [s.app_id]) as watch, s.serve() as served:
        # By now the service holds its own Graph and Key Vault tokens; only verify asks.
        staged = s.wait_state({RotationState.STAGED}, 30, "the new secret to be staged")
        before = emu.faults.count_of("token", 503)
        emu.faults.update({"error_rates": {"token": {503: 1.0}}})
        finish_propagation(emu, s.app_id)

        def outage_met() -> bool:
            moved = (r := s.rotation()) is None or r.state is not RotationState.STAGED
            return moved or emu.faults.count_of("token", 503) >= before + 8

        # Two verify attempts (each one SDK retry series) meet the outage...
        wait_for(outage_met, 60, "verify attempts to meet the token endpoint outage")
        during = s.rotation()
        assert during is not None
        # ...and the secret is neither promoted nor written off as refused.
        assert during.state is RotationState.STAGED, during
        assert metric(served, r'rotator_requests_total\{operation="try_secret",'
                              r'service="token",status="503"\} [1-9]')
        assert s.key_ids() == {s.old_key_id, staged.new_key_id}
        assert s.consumer_key_id() == s.old_key_id
        token = assert_ready_while(served, 1)["token"]
        assert token["status"] == "failing", token
        assert served.alive()
        emu.faults.update({"error_rates": {}})
        s.wait_state({RotationState.COMPLETED, RotationState.FAILED}, 60,
                     "the rotation to end after the token endpoint is back")
        assert reported(served, "token")["status"] == "ok"
        served.stop()
    rotation = s.finish(served, watch)
    assert rotation.new_key_id == staged.new_key_id
    s.close()


def test_token_endpoint_5xx_past_the_verify_deadline_rolls_back(
    emu: RunningEmulator, pg_url: str, tmp_path: Path
) -> None:
    # The design bounds verify by verify_timeout_seconds whatever the reason: an unproven
    # secret is never promoted, so one the service could not test in time is removed.
    s = Scenario(emu, pg_url, tmp_path, "token-deadline", verify_timeout_seconds=12)
    emu.tenant.propagation_seconds = NEVER
    with CredentialWatch(emu, [s.app_id]) as watch, s.serve() as served:
        staged = s.wait_state({RotationState.STAGED}, 30, "the new secret to be staged")
        emu.faults.update({"error_rates": {"token": {503: 1.0}}})
        finish_propagation(emu, s.app_id)
        failed = s.wait_state({RotationState.FAILED, RotationState.COMPLETED}, 60,
                              "verify to give up at its deadline")
        assert failed.state is RotationState.FAILED, failed
        assert "token endpoint unavailable (HTTP 503)" in (failed.last_error or "")
        # rolled back: the new secret is gone; the old one and the consumer secret untouched
        assert s.key_ids() == {s.old_key_id}
        assert s.consumer_key_id() == s.old_key_id
        assert failed.consumer_version is None
        staging = {v.version: v for v in emu.tenant.vault.versions(f"{s.secret_name}-next")}
        assert not staging[str(staged.staging_version)].enabled
        # the app backs off (an hour) before the next try; the service stays ready
        assert failed.next_attempt_at is not None
        assert (failed.next_attempt_at - datetime.now(UTC)).total_seconds() > 3000
        emu.faults.update({"error_rates": {}})
        s.consumers_still_served()
        assert_ready_while(served, 1)
        served.stop()
    assert served.proc.returncode == 0
    assert watch.gaps == []
    assert check_tenant(emu.tenant, s.store, managed_apps(s.policy)) == []
    log = served.log()
    assert [v for v in watch.values if v in log] == []
    s.close()


def test_database_down_mid_rotation_not_ready_then_resumes(
    emu: RunningEmulator, pg_url: str, tmp_path: Path
) -> None:
    s = Scenario(emu, pg_url, tmp_path, "db-verify")
    emu.tenant.propagation_seconds = NEVER
    with CredentialWatch(emu, [s.app_id]) as watch, s.serve() as served:
        staged = s.wait_state({RotationState.STAGED}, 30, "the new secret to be staged")
        set_connections_allowed(pg_url, False)
        try:
            wait_for(lambda: served.get("/readyz").status_code == 503, 30, "not ready")
            body = served.get("/readyz").json()
            assert body["reason"].startswith("database unreachable"), body
            assert body["dependencies"]["database"]["status"] == "unreachable"
            assert served.get("/healthz").status_code == 200
            # The secret propagates while the database is away: verify may prove it but
            # cannot record it, so nothing may move on until the database is back.
            finish_propagation(emu, s.app_id)
            wait_for(lambda: "rotation step crashed" in served.log()
                     or "job failed" in served.log(), 30, "the outage to be met")
            time.sleep(2)
            assert served.alive()
            assert served.get("/healthz").status_code == 200
            assert served.get("/readyz").status_code == 503
            s.consumers_still_served()
        finally:
            set_connections_allowed(pg_url, True)
        wait_for(lambda: served.get("/readyz").status_code == 200, 60, "ready after the outage")
        assert reported(served, "database") == {"status": "ok"}
        s.wait_state({RotationState.COMPLETED, RotationState.FAILED}, 60,
                     "the rotation to resume and end after the outage")
        served.stop()
    rotation = s.finish(served, watch)
    assert rotation.id == staged.id and rotation.new_key_id == staged.new_key_id
    s.close()
