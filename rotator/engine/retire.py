"""retire: after the grace period, remove the superseded credential, and only that one."""

from __future__ import annotations

from rotator.certificate_material import CertificateMaterial
from rotator.domain.credentials import AppRegistration, Credential, CredentialKind
from rotator.domain.policies import may_retire
from rotator.domain.records import AuditOutcome
from rotator.domain.rotation import Rotation, rotation_id_from_display_name
from rotator.domain.states import RotationState
from rotator.engine.certificates import material_of, remove_certificate
from rotator.engine.context import EngineDeps, StepFailed, record, step_error
from rotator.ports import DirectoryError, SecretStoreError


def retire_due(rotation: Rotation, deps: EngineDeps, *, retire_now: bool = False) -> bool:
    if retire_now or rotation.retire_after is None:
        return True
    return deps.now() >= rotation.retire_after


async def retire(deps: EngineDeps, rotation: Rotation) -> Rotation:
    if rotation.state is RotationState.PROMOTED:
        if rotation.old_key_id is None:
            strays = await _remove_strays(deps, rotation)
            return record(
                deps, rotation,
                rotation.advance(RotationState.COMPLETED, deps.now(), finished_at=deps.now()),
                step="retire",
                message="nothing to retire (no superseded credential)" + _strays_note(strays),
            )
        assert rotation.new_key_id is not None
        try:
            app = await deps.directory.get_application(rotation.app_id)
            consumer = await deps.vault(rotation).get_secret(rotation.secret_name)
        except (DirectoryError, SecretStoreError) as exc:
            raise step_error(exc) from None
        if app is None:
            raise StepFailed(f"app {rotation.app_id} no longer exists in the tenant")
        if app.credential(rotation.old_key_id) is None:
            strays = await _remove_strays(deps, rotation)
            return record(
                deps, rotation,
                rotation.advance(RotationState.COMPLETED, deps.now(), finished_at=deps.now()),
                step="retire",
                message=f"old credential {rotation.old_key_id} already gone" + _strays_note(strays),
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
    strays = await _remove_strays(deps, rotation)
    message = f"old credential {rotation.old_key_id} removed ({how})" + _strays_note(strays)
    return record(
        deps, rotation,
        rotation.advance(RotationState.COMPLETED, deps.now(), finished_at=deps.now(),
                         attempts=0, last_error=None, next_attempt_at=None),
        step="retire", message=message,
        details={"old_key_id": rotation.old_key_id, "removed_by": how,
                 "strays_removed": ",".join(strays)},
    )


def _strays_note(strays: list[str]) -> str:
    if not strays:
        return ""
    return (f"; also removed {', '.join(strays)}, created for this rotation but never "
            "promoted (a write that landed after its owner died)")


async def _new_signer(deps: EngineDeps, rotation: Rotation) -> CertificateMaterial | None:
    """The new certificate's key, from the consumer secret, when it still holds it."""
    try:
        consumer = await deps.vault(rotation).get_secret(rotation.secret_name)
    except SecretStoreError as exc:
        raise step_error(exc) from None
    if consumer is not None and consumer.tags.get("key_id") == rotation.new_key_id:
        return material_of(consumer)
    return None


async def _remove(deps: EngineDeps, rotation: Rotation, cred: Credential) -> str:
    if cred.kind is CredentialKind.SECRET:
        try:
            await deps.directory.remove_password(rotation.object_id, cred.key_id)
        except DirectoryError as exc:
            raise step_error(exc) from None
        return "removePassword"
    # The proof is signed by the new certificate, whose key the consumer secret holds
    # (retire checked that it holds the new credential); PATCH when no proof is possible.
    signer = await _new_signer(deps, rotation)
    return await remove_certificate(deps, rotation, cred.key_id, [signer])


async def _read_app(deps: EngineDeps, rotation: Rotation) -> AppRegistration | None:
    try:
        return await deps.directory.get_application(rotation.app_id)
    except DirectoryError as exc:
        raise step_error(exc) from None


async def _remove_old(deps: EngineDeps, rotation: Rotation, old_key_id: str) -> str:
    """Remove by the old credential's own kind (a kind switch retires a secret too)."""
    app = await _read_app(deps, rotation)
    old = app.credential(old_key_id) if app is not None else None
    if old is None:
        return "already gone"
    return await _remove(deps, rotation, old)


async def _remove_strays(deps: EngineDeps, rotation: Rotation) -> list[str]:
    """Credentials named after this rotation other than the promoted one.

    A process killed with its addPassword in flight can have that write land after
    another process took the rotation over and created its own credential; such a
    credential's value was never stored, so nobody can use it. Invariant: after
    recovery every credential rotator created is the promoted one or removed.
    """
    app = await _read_app(deps, rotation)
    if app is None:
        return []
    strays = [
        c for c in app.credentials
        if rotation_id_from_display_name(c.display_name) == rotation.id
        and c.key_id not in (rotation.new_key_id, rotation.old_key_id)
    ]
    for cred in strays:
        await _remove(deps, rotation, cred)
    return [c.key_id for c in strays]
