"""create + stage: a new client secret in Entra, its value at once in the staging secret.

Graph returns ``secretText`` exactly once, so the two writes belong to one step:
the rotation is marked ``creating`` first, and if the process dies between the
two, recovery (``resume_creating``) finds the credential by its display name and
removes it because its value is lost.
"""

from __future__ import annotations

import contextlib
from datetime import timedelta

from rotator.domain.rotation import Rotation, credential_display_name, rotation_id_from_display_name
from rotator.domain.states import RotationState
from rotator.engine.context import EngineDeps, StepFailed, record, step_error
from rotator.ports import DirectoryError, SecretStoreError, StoredSecret

STAGING_CONTENT_TYPE = "text/plain"


def staging_tags(rotation: Rotation, key_id: str) -> dict[str, str]:
    return {
        "managed-by": "rotator",
        "rotation_id": rotation.id,
        "app_id": rotation.app_id,
        "key_id": key_id,
        "stage": "unverified",
    }


async def create_and_stage(deps: EngineDeps, rotation: Rotation) -> Rotation:
    if rotation.state is RotationState.CREATING:
        rotation = await resume_creating(deps, rotation)
        if rotation.state is not RotationState.PENDING:
            return rotation
    policy = deps.app_policy(rotation.app_id)
    if policy is None:
        raise StepFailed("the app was taken out of the policy file before its secret was created")
    now = deps.now()
    end = now + timedelta(days=policy.lifetime_days)
    creating = record(
        deps, rotation, rotation.advance(RotationState.CREATING, now),
        step="create", message="creating a new client secret", outcome="info",
    )
    try:
        new = await deps.directory.add_password(
            creating.object_id, credential_display_name(creating.id), end
        )
    except DirectoryError as exc:
        raise step_error(exc) from None
    try:
        staged = await deps.vault(creating).set_secret(
            creating.staging_secret_name,
            new.secret,
            content_type=STAGING_CONTENT_TYPE,
            tags=staging_tags(creating, new.key_id),
            expires_on=new.end or end,
        )
    except SecretStoreError as exc:
        # The value exists nowhere else: remove the credential now (recovery would too).
        with contextlib.suppress(DirectoryError):  # else resume_creating removes it later
            await deps.directory.remove_password(creating.object_id, new.key_id)
        raise step_error(exc) from None
    return record(
        deps, creating,
        creating.advance(
            RotationState.STAGED, deps.now(),
            new_key_id=new.key_id, new_key_end_at=new.end or end,
            staging_version=staged.version, attempts=0, last_error=None, next_attempt_at=None,
        ),
        step="stage",
        message=f"new secret {new.key_id} (hint {new.hint or '?'}) created and staged",
        details={"new_key_id": new.key_id, "staging_version": staged.version},
    )


async def find_staged(deps: EngineDeps, rotation: Rotation) -> StoredSecret | None:
    """The enabled staging version this rotation wrote, if any."""
    versions = await deps.vault(rotation).list_versions(rotation.staging_secret_name)
    mine = [v for v in versions if v.tags.get("rotation_id") == rotation.id and v.enabled]
    return max(mine, key=lambda v: v.created_on or deps.now(), default=None)


async def resume_creating(deps: EngineDeps, rotation: Rotation) -> Rotation:
    """A previous run died inside create+stage: keep what is complete, remove the rest."""
    try:
        app = await deps.directory.get_application(rotation.app_id)
        staged = await find_staged(deps, rotation)
    except (DirectoryError, SecretStoreError) as exc:
        raise step_error(exc) from None
    if app is None:
        raise StepFailed(f"app {rotation.app_id} no longer exists in the tenant")
    mine = [
        c for c in app.credentials if rotation_id_from_display_name(c.display_name) == rotation.id
    ]
    keep = staged.tags.get("key_id") if staged is not None else None
    if keep is not None and any(c.key_id == keep for c in mine):
        for extra in (c for c in mine if c.key_id != keep):
            await _remove(deps, rotation, extra.key_id)
        cred = next(c for c in mine if c.key_id == keep)
        assert staged is not None
        return record(
            deps, rotation,
            rotation.advance(
                RotationState.STAGED, deps.now(), new_key_id=keep,
                new_key_end_at=cred.end, staging_version=staged.version,
            ),
            step="recover", message=f"found secret {keep} created and staged before a restart",
        )
    for lost in mine:
        await _remove(deps, rotation, lost.key_id)
    return record(
        deps, rotation,
        rotation.advance(RotationState.PENDING, deps.now(), attempts=rotation.attempts + 1),
        step="recover",
        message=f"removed {len(mine)} secret(s) whose value was never stored; creating again",
        outcome="info",
        details={"removed": len(mine)},
    )


async def _remove(deps: EngineDeps, rotation: Rotation, key_id: str) -> None:
    try:
        await deps.directory.remove_password(rotation.object_id, key_id)
    except DirectoryError as exc:
        raise step_error(exc) from None
