"""retire: after the grace period, remove the superseded credential, and only that one."""

from __future__ import annotations

from rotator.domain.credentials import CredentialKind
from rotator.domain.policies import may_retire
from rotator.domain.records import AuditOutcome
from rotator.domain.rotation import Rotation
from rotator.domain.states import RotationState
from rotator.engine.certificates import material_of, remove_certificate
from rotator.engine.context import (
    EngineDeps,
    StepFailed,
    StepRetry,
    read_app_settled,
    record,
    step_error,
)
from rotator.ports import DirectoryError, SecretStoreError


def retire_due(rotation: Rotation, deps: EngineDeps, *, retire_now: bool = False) -> bool:
    if retire_now or rotation.retire_after is None:
        return True
    return deps.now() >= rotation.retire_after


async def retire(deps: EngineDeps, rotation: Rotation) -> Rotation:
    if rotation.state is RotationState.PROMOTED:
        if rotation.old_key_id is None:
            return record(
                deps, rotation,
                rotation.advance(RotationState.COMPLETED, deps.now(), finished_at=deps.now()),
                step="retire", message="nothing to retire (no superseded credential)",
            )
        assert rotation.new_key_id is not None
        old_key, new_key = rotation.old_key_id, rotation.new_key_id
        try:
            app = await read_app_settled(
                deps, rotation,
                lambda a: a is not None and a.credential(old_key) is not None
                and a.credential(new_key) is not None)
            consumer = await deps.vault(rotation).get_secret(rotation.secret_name)
        except (DirectoryError, SecretStoreError) as exc:
            raise step_error(exc) from None
        if app is None:
            raise StepFailed(f"app {rotation.app_id} no longer exists in the tenant")
        if app.credential(new_key) is None and app.credential(old_key) is not None:
            # Verified and promoted, so it exists: the directory's reads have not caught up.
            raise StepRetry(f"the directory does not show the new credential {new_key} yet")
        if app.credential(rotation.old_key_id) is None:
            return record(
                deps, rotation,
                rotation.advance(RotationState.COMPLETED, deps.now(), finished_at=deps.now()),
                step="retire", message=f"old credential {rotation.old_key_id} already gone",
            )
        held = consumer.tags.get("key_id") if consumer is not None else None
        if held != rotation.new_key_id:
            raise StepFailed(
                f"the consumer secret {rotation.secret_name} no longer holds "
                f"{rotation.new_key_id} (it holds {held or 'nothing'}); not retiring "
                f"{rotation.old_key_id} — check who changed it"
            )
        decision = may_retire(app, rotation.old_key_id, rotation.new_key_id, deps.now())
        if not decision.allowed:
            raise StepFailed(f"not retiring {rotation.old_key_id}: {decision.reason}")
        rotation = record(
            deps, rotation, rotation.advance(RotationState.RETIRING, deps.now()),
            step="retire", message=f"removing superseded credential {rotation.old_key_id}",
            outcome=AuditOutcome.INFO,
        )
    assert rotation.old_key_id is not None
    how = await _remove_old(deps, rotation, rotation.old_key_id)
    return record(
        deps, rotation,
        rotation.advance(RotationState.COMPLETED, deps.now(), finished_at=deps.now(),
                         attempts=0, last_error=None, next_attempt_at=None),
        step="retire", message=f"old credential {rotation.old_key_id} removed ({how})",
        details={"old_key_id": rotation.old_key_id, "removed_by": how},
    )


async def _remove_old(deps: EngineDeps, rotation: Rotation, old_key_id: str) -> str:
    """Remove by the old credential's own kind (a kind switch retires a secret too)."""
    try:
        app = await read_app_settled(
            deps, rotation,
            lambda a: a is not None and a.credential(old_key_id) is not None)
    except DirectoryError as exc:
        raise step_error(exc) from None
    old = app.credential(old_key_id) if app is not None else None
    if old is None:
        return "already gone"
    if old.kind is CredentialKind.SECRET:
        try:
            await deps.directory.remove_password(rotation.object_id, old_key_id)
        except DirectoryError as exc:
            raise step_error(exc) from None
        return "removePassword"
    # The proof is signed by the new certificate, whose key the consumer secret holds
    # (retire checked that it holds the new credential); PATCH when no proof is possible.
    signer = None
    try:
        consumer = await deps.vault(rotation).get_secret(rotation.secret_name)
    except SecretStoreError as exc:
        raise step_error(exc) from None
    if consumer is not None and consumer.tags.get("key_id") == rotation.new_key_id:
        signer = material_of(consumer)
    return await remove_certificate(deps, rotation, old_key_id, [signer])
