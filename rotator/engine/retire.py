"""retire: after the grace period, remove the superseded credential, and only that one.

With ``retire_when = "unused"`` the grace period is not enough: the credential usage
report must show the new credential in use since promote and the old one quiet for
``quiet_hours`` (:func:`rotator.domain.retirement.judge_usage`). Until then the
retirement is *held* (recorded on the rotation, re-checked, told to the hooks, alerted
once overdue). A report that cannot be read falls back to the grace rule, said once.
``rotator rotate --retire-now`` overrides both, recorded as an admin decision.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from rotator.certificate_material import CertificateMaterial
from rotator.domain.credentials import AppRegistration, Credential, CredentialKind
from rotator.domain.hooks import EventType
from rotator.domain.policies import may_retire
from rotator.domain.records import AuditOutcome
from rotator.domain.retirement import RetireRule, held_kind, judge_usage
from rotator.domain.rotation import Rotation, rotation_id_from_display_name
from rotator.domain.states import RotationState
from rotator.engine.certificates import material_of, remove_certificate
from rotator.engine.context import (
    EngineDeps,
    StepFailed,
    StepRetry,
    fence,
    log,
    read_app_settled,
    record,
    step_error,
)
from rotator.engine.hooks import notify
from rotator.ports import DirectoryError, SecretStoreError, UsageReportUnavailable

# How often a held retirement looks at the usage report again (at most).
HELD_RECHECK = timedelta(minutes=15)


def retire_due(rotation: Rotation, deps: EngineDeps, *, retire_now: bool = False) -> bool:
    if retire_now or rotation.retire_after is None:
        return True
    return deps.now() >= rotation.retire_after


async def retire(deps: EngineDeps, rotation: Rotation, *, retire_now: bool = False
                 ) -> Rotation:
    rule = "grace"
    if rotation.state is RotationState.PROMOTED:
        if rotation.old_key_id is None:
            strays = await _remove_strays(deps, rotation)
            return await record(
                deps, rotation,
                rotation.advance(RotationState.COMPLETED, deps.now(), finished_at=deps.now()),
                step="retire",
                message="nothing to retire (no superseded credential)" + _strays_note(strays),
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
            strays = await _remove_strays(deps, rotation, app)
            return await record(
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
        evidence = await _rule(deps, rotation, retire_now=retire_now)
        if isinstance(evidence, Rotation):
            return evidence  # held
        rotation, rule = evidence
        rotation = await record(
            deps, rotation,
            rotation.advance(RotationState.RETIRING, deps.now(), held=None, held_overdue=False),
            step="retire", message=f"removing superseded credential {rotation.old_key_id} "
                                   f"(rule: {rule})",
            outcome=AuditOutcome.INFO, details={"retired_by": rule},
        )
        seen: AppRegistration | None = app
    else:
        rule = await _recorded_rule(deps, rotation)
        seen = None  # resumed after a restart: read the app afresh
    assert rotation.old_key_id is not None
    how = await _remove_old(deps, rotation, rotation.old_key_id, seen)
    strays = await _remove_strays(deps, rotation, seen)
    message = (f"old credential {rotation.old_key_id} removed ({how}; rule: {rule})"
               + _strays_note(strays))
    return await record(
        deps, rotation,
        rotation.advance(RotationState.COMPLETED, deps.now(), finished_at=deps.now(),
                         attempts=0, last_error=None, next_attempt_at=None),
        step="retire", message=message,
        details={"old_key_id": rotation.old_key_id, "removed_by": how, "retired_by": rule,
                 "strays_removed": ",".join(strays)},
    )


async def _recorded_rule(deps: EngineDeps, rotation: Rotation) -> str:
    """The rule the retiring step recorded (re-entry after a crash)."""
    for event in reversed(await deps.db(deps.store.history, rotation_id=rotation.id, limit=50)):
        found = event.details.get("retired_by")
        if isinstance(found, str):
            return found
    return "grace"


async def _rule(deps: EngineDeps, rotation: Rotation, *, retire_now: bool
                ) -> Rotation | tuple[Rotation, str]:
    """Which rule lets the old credential go now, or the rotation held (saved)."""
    if retire_now or rotation.retire_now:
        return rotation, "admin decision (--retire-now)"
    policy = deps.app_policy(rotation.app_id)
    if policy is None or policy.retire_when is not RetireRule.UNUSED:
        return rotation, "grace"
    old_key_id, new_key_id = rotation.old_key_id, rotation.new_key_id
    assert old_key_id is not None and new_key_id is not None
    try:
        usage = await deps.usage.last_sign_ins(rotation.app_id)
    except UsageReportUnavailable as exc:
        if rotation.rule_fallback is None:
            # Said once per rotation (log, audit; the alert is once per app).
            log.warning("credential usage report unavailable; retiring on the grace rule",
                        app_id=rotation.app_id, rotation_id=rotation.id, error=str(exc))
            rotation = await record(
                deps, rotation, rotation.with_changes(deps.now(), rule_fallback=str(exc)),
                step="retire", outcome=AuditOutcome.ERROR,
                message=f"cannot read the credential usage report for app {rotation.app_id} "
                        f"({exc}); falling back to the grace rule",
                details={"fallback": str(exc)},
            )
        return rotation, f"grace (fallback: {exc})"
    except DirectoryError as exc:
        raise step_error(exc) from None
    now = deps.now()
    promoted_at = rotation.promoted_at or rotation.updated_at
    verdict = judge_usage(
        usage, old_key_id=old_key_id, new_key_id=new_key_id,
        promoted_at=promoted_at, now=now, quiet=timedelta(hours=policy.quiet_hours),
        max_wait=timedelta(hours=policy.retire_max_wait_hours),
    )
    if verdict.retire:
        return rotation, f"unused: {verdict.reason}"
    return await _hold(deps, rotation, verdict.reason, verdict.overdue, now,
                       timedelta(hours=policy.quiet_hours))


async def _hold(deps: EngineDeps, rotation: Rotation, reason: str, overdue: bool,
                now: datetime, quiet: timedelta) -> Rotation:
    recheck = max(min(HELD_RECHECK, quiet / 4), timedelta(seconds=1))
    held = rotation.with_changes(
        now, held=reason, held_since=rotation.held_since or now, held_overdue=overdue,
        next_attempt_at=now + recheck, lease_owner=deps.owner,
        lease_expires_at=now + timedelta(seconds=deps.lease_seconds),
    )
    news = held_kind(rotation.held) != held_kind(reason) or overdue != rotation.held_overdue
    if news:
        waited = (now - (rotation.promoted_at or rotation.updated_at)).total_seconds() / 3600
        message = (f"retirement of {rotation.old_key_id} {reason}"
                   + (f"; overdue: waited {waited:.1f} h, more than retire_max_wait_hours"
                      if overdue else ""))
        saved = await record(deps, rotation, held, step="retire", message=message,
                       outcome=AuditOutcome.ERROR if overdue else AuditOutcome.INFO,
                       details={"held": reason, "overdue": overdue})
    else:
        # The same verdict again: the rotation's record is updated, the trail is not.
        saved = await deps.db(deps.store.save_rotation, held, expected_state=rotation.state)
        deps.progress(f"retire: {reason}")
    await notify(deps, saved, EventType.HELD)
    return await deps.db(deps.store.get_rotation, saved.id) or saved


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
            await fence(deps, rotation)
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


async def _remove_old(deps: EngineDeps, rotation: Rotation, old_key_id: str,
                      seen: AppRegistration | None = None) -> str:
    """Remove by the old credential's own kind (a kind switch retires a secret too).

    ``seen``: a read this step made a moment ago; when it lists the old credential it
    is all that is needed, and no second read is made."""
    listed = seen.credential(old_key_id) if seen is not None else None
    if listed is not None:
        return await _remove(deps, rotation, listed)
    # "Already gone" only from reads that settled: one lagging read proves nothing.
    try:
        app = await read_app_settled(
            deps, rotation,
            lambda a: a is not None and a.credential(old_key_id) is not None)
    except DirectoryError as exc:
        raise step_error(exc) from None
    old = app.credential(old_key_id) if app is not None else None
    if old is None:
        return "already gone"
    return await _remove(deps, rotation, old)


async def _remove_strays(deps: EngineDeps, rotation: Rotation,
                         seen: AppRegistration | None = None) -> list[str]:
    """Credentials named after this rotation other than the promoted one.

    A process killed with its addPassword in flight can have that write land after
    another process took the rotation over and created its own credential; such a
    credential's value was never stored, so nobody can use it. Invariant: after
    recovery every credential rotator created is the promoted one or removed.

    ``seen``: the read this step already made (settled, showing the new credential);
    a stray that landed before promote shows in it as in any later read.
    """
    app = seen if seen is not None else await _read_app(deps, rotation)
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
