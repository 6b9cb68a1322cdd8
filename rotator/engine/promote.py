"""promote: the proven value becomes the consumer secret's latest version.

Re-entrant: if the consumer secret's latest version already carries this
rotation's id, the write happened before a restart and is only recorded.
"""

from __future__ import annotations

from datetime import timedelta

from rotator.domain.certificates import PEM_CONTENT_TYPE
from rotator.domain.credentials import CredentialKind
from rotator.domain.hooks import EventType
from rotator.domain.rotation import Rotation
from rotator.domain.states import RotationState
from rotator.engine.context import EngineDeps, StepFailed, fence, log, record, step_error
from rotator.engine.hooks import wants
from rotator.ports import SecretStoreError

CONSUMER_CONTENT_TYPE = "text/plain"


def consumer_tags(rotation: Rotation) -> dict[str, str]:
    assert rotation.new_key_id is not None
    tags = {
        "managed-by": "rotator",
        "app_id": rotation.app_id,
        "key_id": rotation.new_key_id,
        "rotation_id": rotation.id,
        "kind": str(rotation.kind),
    }
    if rotation.kind is CredentialKind.CERTIFICATE and rotation.thumbprint:
        tags["thumbprint"] = rotation.thumbprint
    return tags


async def promote(deps: EngineDeps, rotation: Rotation, *, retire_now: bool = False) -> Rotation:
    policy = deps.app_policy(rotation.app_id)
    grace_hours = policy.grace_hours if policy is not None else 24.0
    vault = deps.vault(rotation)
    try:
        latest = await vault.get_secret(rotation.secret_name)
        if latest is not None and latest.tags.get("rotation_id") == rotation.id:
            version = latest.version
        else:
            staged = await vault.get_secret(
                rotation.staging_secret_name, rotation.staging_version
            )
            if staged is None or staged.value is None:
                raise StepFailed("the staged value disappeared before promotion")
            await fence(deps, rotation)
            written = await vault.set_secret(
                rotation.secret_name,
                staged.value,
                # Certificates keep the staged format (PEM or PKCS#12) and its content type.
                content_type=(staged.content_type or PEM_CONTENT_TYPE)
                if rotation.kind is CredentialKind.CERTIFICATE else CONSUMER_CONTENT_TYPE,
                tags=consumer_tags(rotation),
                expires_on=rotation.new_key_end_at,
            )
            version = written.version
    except SecretStoreError as exc:
        raise step_error(exc) from None
    if rotation.staging_version is not None:
        # The staging copy has done its job; disabling it keeps one readable copy.
        try:
            await fence(deps, rotation)
            await vault.disable_version(rotation.staging_secret_name, rotation.staging_version)
        except SecretStoreError as exc:
            log.warning("could not disable the staging version", rotation_id=rotation.id,
                        error=str(exc))
    now = deps.now()
    retire_now = retire_now or rotation.retire_now
    retire_after = now if retire_now else now + timedelta(hours=grace_hours)
    # With consumer hooks the promoted event is due at once (and gates retirement).
    hooks_due = now if wants(deps, rotation.app_id, EventType.PROMOTED) else None
    return await record(
        deps, rotation,
        rotation.advance(RotationState.PROMOTED, now, consumer_version=version,
                         retire_after=retire_after, attempts=0, last_error=None,
                         next_attempt_at=hooks_due, promoted_at=now),
        step="promote",
        message=f"secret {rotation.secret_name} version {version} now holds "
                f"{rotation.new_key_id}; old credential retires after {retire_after.isoformat()}",
        details={"consumer_version": version, "retire_after": retire_after.isoformat()},
    )
