"""rollback: a rotation that failed before promote removes what it created.

The old credential and the consumer secret are never touched here.
"""

from __future__ import annotations

from rotator.certificate_material import CertificateMaterial
from rotator.domain.backoff import failure_backoff
from rotator.domain.credentials import CredentialKind
from rotator.domain.records import AuditOutcome
from rotator.domain.rotation import Rotation, rotation_id_from_display_name
from rotator.domain.states import RotationState
from rotator.engine.certificates import material_of, remove_certificate
from rotator.engine.context import EngineDeps, fence, log, read_app_settled, record, step_error
from rotator.ports import DirectoryError, SecretStoreError


async def begin_rollback(deps: EngineDeps, rotation: Rotation, reason: str) -> Rotation:
    return await record(
        deps, rotation,
        rotation.advance(RotationState.ROLLING_BACK, deps.now(), last_error=reason),
        step="rollback", message=f"rolling back: {reason}", outcome=AuditOutcome.ERROR,
    )


async def roll_back(deps: EngineDeps, rotation: Rotation) -> Rotation:
    try:
        # What it created may not show in the first read yet: settle before concluding.
        app = await read_app_settled(
            deps, rotation,
            lambda a: a is not None and (
                rotation.new_key_id is None or a.credential(rotation.new_key_id) is not None))
    except DirectoryError as exc:
        raise step_error(exc) from None
    removed: list[str] = []
    staging_version = rotation.staging_version
    new_material = None
    if rotation.kind is CredentialKind.CERTIFICATE:
        # The new certificate signs its own removeKey proof: its key is in staging
        # (found by tag when the rotation died before recording the version).
        staging_version, new_material = await _staged_certificate(deps, rotation)
    if app is not None:
        for cred in app.credentials:
            if cred.key_id == rotation.old_key_id:
                continue  # never, whatever its display name says
            if (
                rotation_id_from_display_name(cred.display_name) == rotation.id
                or cred.key_id == rotation.new_key_id
            ):
                if cred.kind is CredentialKind.CERTIFICATE:
                    await remove_certificate(deps, rotation, cred.key_id, [new_material])
                else:
                    try:
                        await fence(deps, rotation)
                        await deps.directory.remove_password(rotation.object_id, cred.key_id)
                    except DirectoryError as exc:
                        raise step_error(exc) from None
                removed.append(cred.key_id)
    if (rotation.kind is CredentialKind.SECRET and rotation.new_key_id is not None
            and rotation.new_key_id not in removed
            and rotation.new_key_id != rotation.old_key_id):
        # Not shown by any read, yet recorded as created: remove it anyway (a secret that
        # is already gone makes removePassword a no-op).
        try:
            await fence(deps, rotation)
            await deps.directory.remove_password(rotation.object_id, rotation.new_key_id)
        except DirectoryError as exc:
            raise step_error(exc) from None
        removed.append(rotation.new_key_id)
    if staging_version is not None:
        try:
            await fence(deps, rotation)
            await deps.vault(rotation).disable_version(
                rotation.staging_secret_name, staging_version
            )
        except SecretStoreError as exc:
            log.warning("could not disable the staging version", rotation_id=rotation.id,
                        error=str(exc))
    failures = 1 + sum(
        1 for r in await deps.db(deps.store.list_rotations, app_id=rotation.app_id, limit=20)
        if r.id != rotation.id and r.state is RotationState.FAILED
    )
    now = deps.now()
    return await record(
        deps, rotation,
        rotation.advance(RotationState.FAILED, now, finished_at=now,
                         next_attempt_at=now + failure_backoff(failures)),
        step="rollback",
        message=f"rolled back; removed {len(removed)} new credential(s); old credential and "
                "consumer secret untouched",
        outcome=AuditOutcome.ERROR,
        details={"removed": ",".join(removed)},
    )


async def _staged_certificate(
    deps: EngineDeps, rotation: Rotation
) -> tuple[str | None, CertificateMaterial | None]:
    from rotator.engine.create import find_staged

    try:
        version = rotation.staging_version
        if version is None:
            found = await find_staged(deps, rotation)
            version = found.version if found is not None else None
        staged = (await deps.vault(rotation).get_secret(rotation.staging_secret_name, version)
                  if version is not None else None)
    except SecretStoreError as exc:
        # Without the key, removal falls back to PATCH; not a reason to stop rolling back.
        log.warning("could not read the staged certificate", rotation_id=rotation.id,
                    error=str(exc))
        return rotation.staging_version, None
    return version, material_of(staged)
