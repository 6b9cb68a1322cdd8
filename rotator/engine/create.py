"""create + stage: the new credential in Entra and its material in the staging secret.

Secrets: Graph returns ``secretText`` exactly once, so the two writes belong to one
step: the rotation is marked ``creating`` first, and if the process dies between the
two, recovery (``resume_creating``) finds the credential by its display name and
removes it because its value is lost.

Certificates go the other way round: rotator makes the key pair itself, so the
private key is written to the staging secret *before* the certificate is registered
in Entra; a certificate whose key is not in Key Vault never exists. Recovery finds
the staged version by its ``rotation_id`` tag and the credential by the thumbprint.
"""

from __future__ import annotations

import contextlib
from datetime import timedelta
from typing import TYPE_CHECKING

from rotator import certificate_material as certs
from rotator.domain.app_management import cap_lifetime
from rotator.domain.certificates import (
    CERT_BACKDATE,
    PEM_CONTENT_TYPE,
    PKCS12_CONTENT_TYPE,
    validity_months,
)
from rotator.domain.credentials import AppRegistration, Credential, CredentialKind
from rotator.domain.records import AuditOutcome
from rotator.domain.rotation import (
    Registration,
    Rotation,
    credential_display_name,
    rotation_id_from_display_name,
)
from rotator.domain.states import RotationState
from rotator.domain.vault_limits import vault_problems
from rotator.engine.certificates import (
    held_consumer_certificate,
    material_of,
    register_certificate,
    remove_certificate,
)
from rotator.engine.context import (
    EngineDeps,
    StepFailed,
    fence,
    log,
    read_app_settled,
    record,
    step_error,
)
from rotator.engine.promote import consumer_tags
from rotator.engine.tenant_policy import (
    LifetimeCap,
    add_password_within_policy,
    blocked_message,
    make_room_for_a_secret,
    read_restrictions,
    refusal_of_type,
)
from rotator.ports import DirectoryError, SecretStoreError, SelfSignedRequest, StoredSecret

if TYPE_CHECKING:
    from rotator.config import AppPolicy

STAGING_CONTENT_TYPE = "text/plain"


def staging_tags(rotation: Rotation, key_id: str) -> dict[str, str]:
    return {
        "managed-by": "rotator",
        "rotation_id": rotation.id,
        "app_id": rotation.app_id,
        "key_id": key_id,
        "stage": "unverified",
    }


def certificate_staging_tags(rotation: Rotation, thumbprint: str | None) -> dict[str, str]:
    # No key_id yet: the certificate is registered after it is staged. No thumbprint when
    # Key Vault makes the certificate: it is not known before (the certificate has it).
    tags = {
        "managed-by": "rotator",
        "rotation_id": rotation.id,
        "app_id": rotation.app_id,
        "kind": str(CredentialKind.CERTIFICATE),
        "stage": "unverified",
    }
    if thumbprint is not None:
        tags["thumbprint"] = thumbprint
    return tags


_PLACEHOLDER_KEY_ID = "00000000-0000-0000-0000-000000000000"


def bundle_format(policy: AppPolicy) -> str:
    """pem or pkcs12: the secret's format, or what a certificate object's backing secret
    serves (key_vault_format = "certificate")."""
    if str(policy.key_vault_format) == "certificate":
        return str(policy.certificate_content_type)
    return str(policy.key_vault_format)


def refuse_what_the_vault_cannot_store(
    rotation: Rotation, *, value_bytes: int | None, content_type: str,
    staging: dict[str, str], thumbprint: str | None = None,
) -> None:
    """Stop before any Graph write when Key Vault could not hold the staging or the
    consumer version (their tags are known up to the new key id, whose size is fixed)."""
    consumer = consumer_tags(rotation.with_changes(
        rotation.updated_at, new_key_id=_PLACEHOLDER_KEY_ID, thumbprint=thumbprint))
    problems = (
        vault_problems(value_bytes=value_bytes, content_type=content_type, tags=staging,
                       what=f"the staging secret {rotation.staging_secret_name}")
        + vault_problems(value_bytes=value_bytes, content_type=content_type, tags=consumer,
                         what=f"the secret {rotation.secret_name}")
    )
    if problems:
        raise StepFailed("Key Vault could not store the new credential, so rotator created "
                         "nothing: " + "; ".join(dict.fromkeys(problems)))


async def create_and_stage(deps: EngineDeps, rotation: Rotation) -> Rotation:
    if rotation.state is RotationState.CREATING:
        rotation = await resume_creating(deps, rotation)
        if rotation.state is not RotationState.PENDING:
            return rotation
    if rotation.kind is CredentialKind.CERTIFICATE:
        return await _create_certificate(deps, rotation)
    policy = deps.app_policy(rotation.app_id)
    if policy is None:
        raise StepFailed("the app was taken out of the policy file before its secret was created")
    restrictions = await read_restrictions(deps, rotation)
    if restrictions is not None and restrictions.password_addition_blocked:
        raise StepFailed(blocked_message(restrictions.describe()))
    refuse_what_the_vault_cannot_store(
        rotation, value_bytes=None, content_type=STAGING_CONTENT_TYPE,
        staging=staging_tags(rotation, _PLACEHOLDER_KEY_ID))
    rotation = await make_room_for_a_secret(deps, rotation)
    now = deps.now()
    wanted = timedelta(days=policy.lifetime_days)
    cap: LifetimeCap | None = None
    lifetime = cap_lifetime(wanted, restrictions.password_max_lifetime if restrictions else None)
    if restrictions is not None and lifetime < wanted:
        cap = LifetimeCap(restrictions.policy_id, wanted, lifetime, "read")
    end = now + lifetime
    creating = await record(
        deps, rotation, rotation.advance(RotationState.CREATING, now),
        step="create",
        message="creating a new client secret"
        + (f"; {cap.message(restrictions.source if restrictions else None)}" if cap else ""),
        outcome=AuditOutcome.INFO, details=cap.details() if cap else None,
    )
    try:
        new, refused_cap = await add_password_within_policy(
            deps, creating, credential_display_name(creating.id), now, lifetime
        )
    except DirectoryError as exc:
        raise (refusal_of_type(exc) or step_error(exc)) from None
    cap = refused_cap or cap
    end = now + (refused_cap.allowed if refused_cap else lifetime)
    try:
        await fence(deps, creating)
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
            await fence(deps, creating)
            await deps.directory.remove_password(creating.object_id, new.key_id)
        raise step_error(exc) from None
    return await record(
        deps, creating,
        creating.advance(
            RotationState.STAGED, deps.now(),
            new_key_id=new.key_id, new_key_end_at=new.end or end,
            staging_version=staged.version, attempts=0, last_error=None, next_attempt_at=None,
        ),
        step="stage",
        message=f"new secret {new.key_id} (hint {new.hint or '?'}) created and staged"
        + (f"; {cap.message()}" if cap else ""),
        details={"new_key_id": new.key_id, "staging_version": staged.version,
                 **(cap.details() if cap else {})},
    )


async def find_staged(deps: EngineDeps, rotation: Rotation) -> StoredSecret | None:
    """The enabled staging version this rotation wrote, if any."""
    versions = await deps.vault(rotation).list_versions(rotation.staging_secret_name)
    mine = [v for v in versions if v.tags.get("rotation_id") == rotation.id and v.enabled]
    return max(mine, key=lambda v: v.created_on or deps.now(), default=None)


async def resume_creating(deps: EngineDeps, rotation: Rotation) -> Rotation:
    """A previous run died inside create+stage: keep what is complete, remove the rest."""
    if rotation.kind is CredentialKind.CERTIFICATE:
        return await _resume_creating_certificate(deps, rotation)
    try:
        staged = await find_staged(deps, rotation)
        keep_id = staged.tags.get("key_id") if staged is not None else None
        # What it created may not show in the first read: settle before concluding.
        app = await read_app_settled(
            deps, rotation,
            lambda a: a is not None and any(
                rotation_id_from_display_name(c.display_name) == rotation.id
                and (keep_id is None or c.key_id == keep_id) for c in a.credentials))
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
        return await record(
            deps, rotation,
            rotation.advance(
                RotationState.STAGED, deps.now(), new_key_id=keep,
                new_key_end_at=cred.end, staging_version=staged.version,
            ),
            step="recover", message=f"found secret {keep} created and staged before a restart",
        )
    for lost in mine:
        await _remove(deps, rotation, lost.key_id)
    return await record(
        deps, rotation,
        rotation.advance(RotationState.PENDING, deps.now(), attempts=rotation.attempts + 1),
        step="recover",
        message=f"removed {len(mine)} secret(s) whose value was never stored; creating again",
        outcome=AuditOutcome.INFO,
        details={"removed": len(mine)},
    )


async def _remove(deps: EngineDeps, rotation: Rotation, key_id: str) -> None:
    try:
        await fence(deps, rotation)
        await deps.directory.remove_password(rotation.object_id, key_id)
    except DirectoryError as exc:
        raise step_error(exc) from None


# ------------------------------------------------------------------------ certificates


async def _create_certificate(deps: EngineDeps, rotation: Rotation) -> Rotation:
    policy = deps.app_policy(rotation.app_id)
    if policy is None:
        raise StepFailed("the app was taken out of the policy file before its certificate "
                         "was created")
    restrictions = await read_restrictions(deps, rotation)
    now = deps.now()
    wanted = timedelta(days=policy.lifetime_days)
    lifetime = cap_lifetime(wanted, restrictions.key_max_lifetime if restrictions else None)
    cap = (LifetimeCap(restrictions.policy_id, wanted, lifetime, "read")
           if restrictions is not None and lifetime < wanted else None)
    if str(policy.key_source) == "keyvault":
        return await _create_in_vault(deps, rotation, policy, lifetime, cap,
                                      restrictions.source if restrictions else None)
    # The certificate is valid from a little before now; a capped lifetime counts that too.
    not_after = now + (lifetime - CERT_BACKDATE if cap is not None else lifetime)
    material = certs.generate(str(policy.key_type), policy.certificate_subject, now, not_after)
    value, content_type = certs.bundle(material, bundle_format(policy))
    refuse_what_the_vault_cannot_store(
        rotation, value_bytes=len(value.reveal().encode()), content_type=content_type,
        staging=certificate_staging_tags(rotation, material.thumbprint),
        thumbprint=material.thumbprint)
    creating = await record(
        deps, rotation, rotation.advance(RotationState.CREATING, now),
        step="create",
        message=f"creating a new {policy.key_type} certificate"
        + (f"; {cap.message(restrictions.source if restrictions else None)}" if cap else ""),
        outcome=AuditOutcome.INFO, details=cap.details() if cap else None,
    )
    try:
        await fence(deps, creating)
        staged = await deps.vault(creating).set_secret(
            creating.staging_secret_name, value, content_type=content_type,
            tags=certificate_staging_tags(creating, material.thumbprint),
            expires_on=material.not_after,
        )
    except SecretStoreError as exc:
        # Nothing is registered; if the write landed after all, recovery registers it.
        raise step_error(exc) from None
    return await _register_staged(deps, creating, material, staged.version)


async def _create_in_vault(
    deps: EngineDeps, rotation: Rotation, policy: AppPolicy, lifetime: timedelta,
    cap: LifetimeCap | None, cap_source: str | None,
) -> Rotation:
    """key_source = "keyvault": Key Vault makes the key pair and the self-signed certificate
    as a new version of the staging certificate; rotator takes only the public certificate
    to register it. The private key is read later only where it must sign (a proof, the
    verify assertion) or be copied (promote imports it into the consumer certificate)."""
    months = validity_months(lifetime, capped=cap is not None)
    if months < 1:
        raise StepFailed(
            f"the tenant's policy allows certificates of {lifetime.days} days, less than the "
            "whole month Key Vault's certificates last at the least; rotator created nothing "
            '(use key_source = "rotator" for this app, or lift the policy\'s limit)')
    content_type = PKCS12_CONTENT_TYPE if bundle_format(policy) == "pkcs12" else PEM_CONTENT_TYPE
    staging = certificate_staging_tags(rotation, None)
    refuse_what_the_vault_cannot_store(
        rotation, value_bytes=None, content_type=content_type, staging=staging,
        thumbprint="0" * 40)
    creating = await record(
        deps, rotation, rotation.advance(RotationState.CREATING, deps.now()),
        step="create",
        message=f"asking Key Vault for a new {policy.key_type} certificate valid {months} "
                "month(s)" + (f"; {cap.message(cap_source)}" if cap else ""),
        outcome=AuditOutcome.INFO, details=cap.details() if cap else None,
    )
    request = SelfSignedRequest(subject=policy.certificate_subject,
                                key_size=KEYVAULT_KEY_SIZES[str(policy.key_type)],
                                validity_months=months, content_type=content_type)
    try:
        await fence(deps, creating)
        made = await deps.certificates_at(creating.vault_url).create_self_signed(
            creating.staging_secret_name, request,
            tags=certificate_staging_tags(creating, None))
        public = certs.public_certificate(made.cer)
    except SecretStoreError as exc:
        # If Key Vault made it after all, recovery finds it by its rotation_id tag.
        raise step_error(exc) from None
    except certs.CertificateError as exc:
        raise StepFailed(f"staging certificate {creating.staging_secret_name}: {exc}") from None
    return await _register_staged(deps, creating, public, made.version)


# Key Vault makes RSA keys of these sizes for key_source = "keyvault" (config checks it).
KEYVAULT_KEY_SIZES = {"RSA2048": 2048, "RSA3072": 3072}


async def _register_staged(
    deps: EngineDeps, rotation: Rotation, material: certs.AnyCertificate,
    staging_version: str,
) -> Rotation:
    try:
        app = await deps.directory.get_application(rotation.app_id)
    except DirectoryError as exc:
        raise step_error(exc) from None
    if app is None:
        raise StepFailed(f"app {rotation.app_id} no longer exists in the tenant")
    signer = await held_consumer_certificate(deps, rotation, app)
    registered = await register_certificate(deps, rotation, app, material, signer=signer)
    cred = registered.credential
    how = ("addKey, proven by the certificate rotator stored last time"
           if registered.path is Registration.ADD_KEY
           else "PATCH (no certificate rotator can sign with)")
    return await record(
        deps, rotation,
        rotation.advance(
            RotationState.STAGED, deps.now(),
            new_key_id=cred.key_id, new_key_end_at=cred.end or material.not_after,
            staging_version=staging_version, attempts=0, last_error=None, next_attempt_at=None,
            thumbprint=material.thumbprint, registered_by=registered.path,
        ),
        step="stage",
        message=f"new certificate {cred.key_id} (thumbprint {material.thumbprint}) staged, "
                f"then registered with {how}",
        details={"new_key_id": cred.key_id, "staging_version": staging_version,
                 "thumbprint": material.thumbprint,
                 "registered_by": str(registered.path)},
    )


def _ours(app: AppRegistration, rotation: Rotation, thumbprint: str | None) -> list[Credential]:
    return [
        c for c in app.of_kind(CredentialKind.CERTIFICATE)
        if rotation_id_from_display_name(c.display_name) == rotation.id
        or (thumbprint is not None and c.thumbprint == thumbprint)
    ]


async def _resume_creating_certificate(deps: EngineDeps, rotation: Rotation) -> Rotation:
    """Recovery for certificates, where staging comes first.

    - staged, and a certificate with its thumbprint on the app: carry on from ``staged``;
    - staged, nothing on the app (died between staging and registering): register the
      staged certificate. Its key already sits where it must, and generating another
      would only leave a second, unused private key in the vault. A staged certificate
      that no longer has most of its lifetime ahead is disabled and the step starts over;
    - on the app but nothing staged (cannot happen when staging comes first, but the
      world may disagree): nobody holds its key, so remove it and start over.
    """
    try:
        found = await find_staged(deps, rotation)
        staged = (await deps.vault(rotation).get_secret(rotation.staging_secret_name,
                                                        found.version)
                  if found is not None else None)
        material = material_of(staged)
        thumb = material.thumbprint if material is not None else None
        # Registering again what a lagging read does not show would duplicate it.
        app = await read_app_settled(
            deps, rotation,
            lambda a: a is not None and (thumb is None or any(
                c.thumbprint == thumb for c in a.of_kind(CredentialKind.CERTIFICATE))))
    except (DirectoryError, SecretStoreError) as exc:
        raise step_error(exc) from None
    if app is None:
        raise StepFailed(f"app {rotation.app_id} no longer exists in the tenant")
    ours = _ours(app, rotation, thumb)
    keep = next((c for c in ours if thumb is not None and c.thumbprint == thumb), None)
    held = await held_consumer_certificate(deps, rotation, app)
    for stray in (c for c in ours if keep is None or c.key_id != keep.key_id):
        # Signed by the staged key while it is registered, else by the consumer's key.
        await remove_certificate(deps, rotation, stray.key_id, [material, held])
    if staged is not None and material is not None and keep is not None:
        return await record(
            deps, rotation,
            rotation.advance(
                RotationState.STAGED, deps.now(), new_key_id=keep.key_id,
                new_key_end_at=keep.end or material.not_after, staging_version=staged.version,
                thumbprint=material.thumbprint,
            ),
            step="recover",
            message=f"found certificate {keep.key_id} staged and registered before a restart",
        )
    if staged is not None and material is not None and _fresh_enough(deps, rotation, material):
        log.info("registering a certificate staged before a restart", rotation_id=rotation.id,
                 thumbprint=material.thumbprint)
        return await _register_staged(deps, rotation, material, staged.version)
    if staged is not None:
        with contextlib.suppress(SecretStoreError):
            await fence(deps, rotation)
            await deps.vault(rotation).disable_version(rotation.staging_secret_name,
                                                       staged.version)
    removed = len(ours) - (1 if keep is not None else 0)
    return await record(
        deps, rotation,
        rotation.advance(RotationState.PENDING, deps.now(), attempts=rotation.attempts + 1),
        step="recover",
        message=f"removed {removed} certificate(s) without a staged key; creating again",
        outcome=AuditOutcome.INFO,
        details={"removed": removed},
    )


def _fresh_enough(deps: EngineDeps, rotation: Rotation, material: certs.CertificateMaterial
                  ) -> bool:
    """Still worth registering: valid now, with at least 90 % of the lifetime asked for
    (or of its own validity, when that is shorter: Key Vault counts whole months)."""
    policy = deps.app_policy(rotation.app_id)
    now = deps.now()
    if not certs.valid_for(material, now):
        return False
    if policy is None:
        return True
    full = min(timedelta(days=policy.lifetime_days), material.not_after - material.not_before)
    return (material.not_after - now) >= full * 0.9
