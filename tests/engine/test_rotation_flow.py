"""Secret rotation through the real engine and database, with fake outside services."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import pytest
import structlog

from rotator.domain.credentials import CredentialKind
from rotator.domain.rotation import RotationReason, credential_display_name
from rotator.domain.states import RotationState
from rotator.engine.driver import drive
from rotator.engine.start import RotationRefused, plan_rotation, start_rotation
from rotator.ports import DirectoryError, SecretStoreError
from tests.support.fakes import Crash
from tests.support.invariants import assert_invariants
from tests.support.world import World, make_app, rotate


async def test_rotation_promotes_a_proven_secret_and_retires_the_old_one(world: World) -> None:
    app = world.directory.add_app("orders")
    old_key = app.credentials[0].key_id
    world.manage(app)
    world.probe.refuse_first = 4  # propagation: the first attempts are refused
    result = await rotate(world, app)
    assert result.state is RotationState.COMPLETED
    assert result.old_key_id == old_key
    assert old_key not in app.values
    consumer = world.vault.latest("orders-secret")
    assert consumer is not None and consumer.tags["key_id"] == result.new_key_id
    assert consumer.content_type == "text/plain"
    assert consumer.expires_on == result.new_key_end_at
    staging = world.vault.latest("orders-secret-next")
    assert staging is not None and not staging.enabled
    steps = [e.step for e in world.store.history(rotation_id=result.id)]
    assert steps[0] == "plan" and "verify" in steps and "promote" in steps
    assert steps[-1] == "retire"
    assert_invariants(world, app)


async def test_grace_period_keeps_the_old_credential_until_it_ends(world: World) -> None:
    app = world.directory.add_app("orders")
    old_key = app.credentials[0].key_id
    world.manage(app, grace_hours=24)
    result = await rotate(world, app, retire_now=False)
    assert result.state is RotationState.PROMOTED
    assert old_key in app.values
    assert_invariants(world, app)
    world.clock.advance(23 * 3600)
    assert (await drive(world.deps(), result.id)).state is RotationState.PROMOTED
    world.clock.advance(2 * 3600)
    done = await drive(world.deps(), result.id)
    assert done.state is RotationState.COMPLETED and old_key not in app.values
    assert_invariants(world, app)


async def test_retire_removes_a_credential_of_this_rotation_that_landed_late(
    world: World,
) -> None:
    # A replica killed with its addPassword in flight: another replica took the rotation
    # over at once, saw nothing of that write, and created its own credential; the first
    # write landed afterwards. Found by the replicas test under load: the app kept an
    # extra, never-promoted credential named after the rotation.
    app = world.directory.add_app("orders")
    old_key = app.credentials[0].key_id
    world.manage(app, grace_hours=1)
    result = await rotate(world, app, retire_now=False)
    assert result.state is RotationState.PROMOTED
    late = await world.directory.add_password(
        app.object_id, credential_display_name(result.id), world.clock.now() + timedelta(days=9)
    )
    world.clock.advance(2 * 3600)
    done = await drive(world.deps(), result.id)
    assert done.state is RotationState.COMPLETED
    assert {c.key_id for c in app.credentials} == {result.new_key_id}
    assert late.key_id not in app.values and old_key not in app.values
    retired = [e for e in world.store.history(rotation_id=result.id) if e.step == "retire"]
    assert late.key_id in retired[-1].message
    assert_invariants(world, app)


async def test_verification_that_never_succeeds_rolls_back(world: World) -> None:
    app = world.directory.add_app("orders")
    world.manage(app)
    world.probe.refuse_first = 10_000
    result = await rotate(world, app)
    assert result.state is RotationState.FAILED
    assert "consecutive tokens" in (result.last_error or "")
    assert len(app.credentials) == 1  # the new one was removed, the old one kept
    assert world.vault.latest("orders-secret") is None  # consumers never saw it
    assert result.next_attempt_at is not None and result.next_attempt_at > world.clock.now()
    assert_invariants(world, app)


async def test_a_token_endpoint_outage_in_verify_is_waited_out_and_said_once(
    world: World
) -> None:
    app = world.directory.add_app("orders")
    world.manage(app)
    world.probe.unavailable_first = 6  # 503s, whose bodies carry an AADSTS code too
    with structlog.testing.capture_logs() as logs:
        result = await rotate(world, app)
    assert result.state is RotationState.COMPLETED, result.last_error
    warnings = [e for e in logs if e["log_level"] == "warning"]
    assert [(e["event"], e["status"]) for e in warnings] == [
        ("token endpoint unavailable during verify; waiting for it", 503)]
    assert_invariants(world, app)


async def test_missing_expected_role_fails_with_admin_consent_hint(world: World) -> None:
    app = world.directory.add_app("orders", roles=["ReadOnly"])
    world.manage(app)
    app.roles = []  # consent revoked after the policy was written
    result = await rotate(world, app)
    assert result.state is RotationState.FAILED
    assert "admin consent" in (result.last_error or "")
    assert len(app.credentials) == 1
    assert_invariants(world, app)


async def test_lifetime_refusal_without_a_readable_policy_asks_for_less(world: World) -> None:
    app = world.directory.add_app("orders")
    app.max_lifetime_days = 90  # enforced by Graph; no policy rotator can read
    world.manage(app, lifetime_days=180)
    result = await rotate(world, app)
    assert result.state is RotationState.COMPLETED, result.last_error
    new = app.credential_of(result.new_key_id or "")
    assert new is not None and new.start is not None and new.end is not None
    assert new.end - new.start == timedelta(days=90)
    assert_invariants(world, app)


async def test_not_owner_is_refused_and_nothing_changes(world: World) -> None:
    app = world.directory.add_app("orders", owned=False)
    world.manage(app)
    result = await rotate(world, app)
    assert result.state is RotationState.FAILED
    assert "Authorization_RequestDenied" in (result.last_error or "")
    assert len(app.credentials) == 1


async def test_unknown_and_unmanaged_apps_are_refused(world: World) -> None:
    managed = world.directory.add_app("orders")
    other = world.directory.add_app("other")
    world.manage(managed)
    deps = world.deps()
    with pytest.raises(RotationRefused, match="not managed"):
        await plan_rotation(deps, other.app_id)
    world.directory.apps.pop(managed.object_id)
    with pytest.raises(RotationRefused, match="no app registration"):
        await plan_rotation(deps, managed.app_id)


async def test_transient_errors_are_retried_and_throttling_honours_retry_after(
    world: World,
) -> None:
    app = world.directory.add_app("orders")
    world.manage(app)
    world.faults.before["add_password"].append(
        DirectoryError("throttled", status=429, retry_after=42))
    world.faults.before["set_secret"].append(SecretStoreError("down", status=503))
    start = world.clock.now()
    result = await rotate(world, app)
    assert result.state is RotationState.COMPLETED
    assert (world.clock.now() - start).total_seconds() >= 42
    assert_invariants(world, app)


async def test_stage_failure_removes_the_unstored_secret(world: World) -> None:
    app = world.directory.add_app("orders")
    world.manage(app)
    world.faults.before["set_secret"].append(
        SecretStoreError("Key Vault refused: Forbidden", status=403))
    result = await rotate(world, app)
    assert result.state is RotationState.FAILED
    assert len(app.credentials) == 1
    assert_invariants(world, app)


async def test_second_start_resumes_the_rotation_in_flight(world: World) -> None:
    app = world.directory.add_app("orders")
    world.manage(app)
    deps = world.deps()
    first = await start_rotation(deps, await plan_rotation(deps, app.app_id),
                           reason=RotationReason.MANUAL)
    second = await start_rotation(deps, await plan_rotation(deps, app.app_id),
                            reason=RotationReason.DUE)
    assert first.id == second.id


@dataclass(frozen=True)
class CrashCase:
    kind: CredentialKind
    point: str  # the fake's write after which the process dies
    # certificates: a first rotation already stored a key, so the next one uses addKey
    held: bool = False

    def __str__(self) -> str:
        return f"{self.kind}:{self.point}{':held' if self.held else ''}"


CRASH_CASES = [
    CrashCase(CredentialKind.SECRET, "add_password"),  # created in Entra, value only in memory
    CrashCase(CredentialKind.SECRET, "set_secret:orders-secret-next"),  # staged, not recorded
    CrashCase(CredentialKind.SECRET, "set_secret:orders-secret"),  # promoted, not recorded
    CrashCase(CredentialKind.SECRET, "remove_password"),  # old one removed, not recorded
    # key staged, certificate not registered yet
    CrashCase(CredentialKind.CERTIFICATE, "set_secret:orders-secret-next"),
    CrashCase(CredentialKind.CERTIFICATE, "patch"),  # registered by PATCH, not recorded
    CrashCase(CredentialKind.CERTIFICATE, "set_secret:orders-secret"),
    CrashCase(CredentialKind.CERTIFICATE, "remove_key"),  # old removed with proof
    CrashCase(CredentialKind.CERTIFICATE, "set_secret:orders-secret-next", held=True),
    CrashCase(CredentialKind.CERTIFICATE, "add_key", held=True),  # registered by addKey
    CrashCase(CredentialKind.CERTIFICATE, "remove_key", held=True),
]


@pytest.mark.parametrize("case", CRASH_CASES, ids=str)
async def test_a_crash_after_any_write_converges_on_the_next_run(
    world: World, case: CrashCase
) -> None:
    app = make_app(world, case.kind)
    if case.held:
        first = await rotate(world, app)
        assert first.state is RotationState.COMPLETED, first.last_error
    old_key = app.credentials[0].key_id
    world.faults.crash_after.add(case.point)
    with pytest.raises(Crash):
        await rotate(world, app)
    assert_invariants(world, app)
    # a new process: another lease owner, time moves on past any lease
    world.clock.advance(600)
    result = await rotate(world, app)
    assert result.state is RotationState.COMPLETED, result.last_error
    assert app.credential_of(old_key) is None
    assert_invariants(world, app)
    assert len(app.credentials) == 1
    if case.held:
        assert "add_key" in world.directory.calls


async def test_planning_waits_out_a_brief_graph_outage(world: World) -> None:
    app = world.directory.add_app("orders")
    world.manage(app)
    world.faults.before["get"].extend([DirectoryError("unavailable", status=503),
                                       DirectoryError("throttled", status=429, retry_after=3)])
    result = await rotate(world, app)
    assert result.state is RotationState.COMPLETED


async def test_planning_refuses_after_a_lasting_outage(world: World) -> None:
    app = world.directory.add_app("orders")
    world.manage(app)
    world.faults.before["get"].extend(DirectoryError("unavailable", status=503)
                                      for _ in range(3))
    with pytest.raises(RotationRefused, match="could not read app"):
        await rotate(world, app)
    assert len(app.credentials) == 1
