"""Certificate credentials in Entra: register, remove, and the race-safe PATCH.

Graph offers two ways to change an app's certificates:

- ``addKey``/``removeKey`` change one credential atomically, but need a proof of
  possession signed by a *currently valid* certificate of the app. rotator can sign
  one only with a key it holds: the one it stored in the consumer secret last time
  (or, for rollback and retirement, the new one it holds in staging / the consumer
  secret).
- ``PATCH /applications/{id}`` replaces the whole ``keyCredentials`` list. It is the
  only way in when the app has no valid certificate rotator holds a key for, and it
  is a read-modify-write that Graph does not make conditional (no ETag on
  applications) — see :func:`patch_key_credentials` for how lost updates are avoided.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from rotator import certificate_material as certs
from rotator.certificate_material import AnyCertificate, CertificateError, CertificateMaterial
from rotator.domain.certificates import (
    CERTIFICATE_CONTENT_TYPES,
    KeyEntry,
    check_patch,
    key_ids,
    planned_list,
)
from rotator.domain.credentials import AppRegistration, Credential, CredentialKind
from rotator.domain.rotation import Registration, Rotation, credential_display_name
from rotator.engine.context import EngineDeps, StepRetry, fence, log, step_error
from rotator.ports import DirectoryError, SecretStoreError, StoredSecret

# Rounds of read-check-write-verify before the PATCH gives up for now (StepRetry).
PATCH_ROUNDS = 4

@dataclass(frozen=True, slots=True)
class Registered:
    credential: Credential
    path: Registration


def material_of(stored: StoredSecret | None) -> CertificateMaterial | None:
    """The certificate and key in a secret version, or None when it holds something else."""
    if stored is None or stored.value is None:
        return None
    if stored.content_type not in CERTIFICATE_CONTENT_TYPES:
        return None
    try:
        return certs.load(stored.value, stored.content_type)
    except CertificateError:
        return None


def usable_signer(app: AppRegistration, material: CertificateMaterial | None, now: datetime
                  ) -> Credential | None:
    """The app's valid certificate that ``material`` can sign proofs for, if any."""
    if material is None or not certs.valid_for(material, now):
        return None
    thumb = material.thumbprint
    return next(
        (c for c in app.of_kind(CredentialKind.CERTIFICATE)
         if c.thumbprint == thumb and c.is_valid_at(now)),
        None,
    )


async def held_consumer_certificate(
    deps: EngineDeps, rotation: Rotation, app: AppRegistration
) -> CertificateMaterial | None:
    """The key rotator stored last time, if it still belongs to a valid certificate.

    The consumer secret's latest version must name (``key_id`` tag) a valid key
    credential of the app, and the certificate inside must be that credential.
    """
    try:
        current = await deps.vault(rotation).get_secret(rotation.secret_name)
    except SecretStoreError as exc:
        raise step_error(exc) from None
    if current is None:
        return None
    cred = app.credential(current.tags.get("key_id", ""))
    if cred is None or cred.kind is not CredentialKind.CERTIFICATE:
        return None
    material = material_of(current)
    signer = usable_signer(app, material, deps.now())
    return material if signer is not None and signer.key_id == cred.key_id else None


async def patch_key_credentials(
    deps: EngineDeps, object_id: str, *, add: KeyEntry | None = None, remove: str | None = None
) -> None:
    """Add and/or remove one certificate with PATCH without losing anyone else's change.

    Graph has no conditional PATCH for applications, so each round:

    1. reads the list (with each certificate's ``key``, which a PATCH must resend);
    2. reads it again right before writing and starts over if it changed — a
       writer that added or removed a certificate since step 1 is never overwritten
       with a list that does not know about it;
    3. writes the list from step 2 plus/minus our one change;
    4. reads it back: our change must be there (else a concurrent PATCH replaced our
       list, and the round repeats from fresh state). A certificate we wrote that is
       now missing was removed by someone else after our write; it is reported and
       *not* re-added, because it may have been revoked on purpose.

    What remains is the gap of one request between the read in step 2 and the write
    in step 3: a certificate added there by another tool is lost, and nobody but that
    tool can notice. rotator keeps that gap as small as it can, serialises its own
    writes per app, and uses PATCH only when addKey is impossible (an app with no
    valid certificate rotator holds a key for).
    """
    for _ in range(PATCH_ROUNDS):
        try:
            first = await deps.directory.list_key_credentials(object_id)
            if _already(first, add, remove):
                return
            # Reads lag writes: a list read right after a write (ours or anyone's) may miss
            # it, and writing that list back would undo it. Read again after the lag.
            await deps.sleep(deps.read_settle_seconds)
            current = await deps.directory.list_key_credentials(object_id)
            if _already(current, add, remove):
                return
            if key_ids(current) != key_ids(first):
                log.info("key credentials changed while reading; reading again",
                         object_id=object_id)
                continue
            desired = planned_list(current, add=add, remove=remove)
            await deps.directory.set_key_credentials(object_id, desired)
            after = await deps.directory.list_key_credentials(object_id)
        except DirectoryError as exc:
            raise step_error(exc) from None
        outcome = check_patch(desired, after, added=add.key_id if add else None, removed=remove)
        if outcome.lost:
            log.warning("certificates removed by another writer during rotator's update; "
                        "not restoring them", object_id=object_id,
                        key_ids=",".join(sorted(outcome.lost)))
        if outcome.applied:
            return
        log.warning("rotator's certificate update was overwritten by a concurrent writer; "
                    "trying again", object_id=object_id)
    raise StepRetry("the app's certificates kept changing while rotator updated them")


def _already(entries: Sequence[KeyEntry], add: KeyEntry | None, remove: str | None) -> bool:
    ids = key_ids(entries)
    return (add is None or add.key_id.lower() in ids) and (
        remove is None or remove.lower() not in ids
    )


async def register_certificate(
    deps: EngineDeps, rotation: Rotation, app: AppRegistration, material: AnyCertificate,
    *, signer: CertificateMaterial | None,
) -> Registered:
    """addKey with a proof by ``signer`` when there is one, else the race-safe PATCH."""
    name = credential_display_name(rotation.id)
    if signer is not None:
        proof = certs.proof_jwt(signer, rotation.object_id, deps.now())
        try:
            await fence(deps, rotation)
            cred = await deps.directory.add_key(rotation.object_id, material.der, name, proof)
        except DirectoryError as exc:
            raise step_error(exc) from None
        return Registered(cred, Registration.ADD_KEY)
    # Client-chosen keyId: recovery and the after-PATCH check can find it without guessing.
    entry = KeyEntry(key_id=str(uuid.uuid4()), key=material.der_b64, display_name=name,
                     start=material.not_before, end=material.not_after,
                     thumbprint=material.thumbprint)
    await patch_key_credentials(deps, rotation.object_id, add=entry)
    return Registered(
        Credential(entry.key_id, CredentialKind.CERTIFICATE, name, material.not_before,
                   material.not_after, thumbprint=material.thumbprint),
        Registration.PATCH,
    )


async def remove_certificate(
    deps: EngineDeps, rotation: Rotation, key_id: str,
    signers: Sequence[CertificateMaterial | None],
) -> str:
    """removeKey with a proof by the first signer Graph would accept, else PATCH removal.

    Returns how it was removed. Removing a certificate that is gone is success.
    """
    try:
        app = await deps.directory.get_application(rotation.app_id)
    except DirectoryError as exc:
        raise step_error(exc) from None
    if app is None or app.credential(key_id) is None:
        return "already gone"
    now = deps.now()
    for material in signers:
        if material is not None and usable_signer(app, material, now) is not None:
            proof = certs.proof_jwt(material, rotation.object_id, now)
            try:
                await fence(deps, rotation)
                await deps.directory.remove_key(rotation.object_id, key_id, proof)
            except DirectoryError as exc:
                raise step_error(exc) from None
            return "removeKey"
    await patch_key_credentials(deps, rotation.object_id, remove=key_id)
    return "patch"
