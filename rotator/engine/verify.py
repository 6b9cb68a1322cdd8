"""verify: prove the staged credential gets the right token, several times in a row.

Re-entrant: it reads the value back from the staging secret, so a restart simply
starts counting again.
"""

from __future__ import annotations

from datetime import timedelta

from rotator import certificate_material as certs
from rotator import throttle_waits
from rotator.domain.backoff import jittered
from rotator.domain.credentials import CredentialKind
from rotator.domain.rotation import Rotation
from rotator.domain.secret_value import SecretValue
from rotator.domain.states import RotationState
from rotator.domain.verification import (
    AttemptKind,
    VerifyProgress,
    judge_claims,
    judge_refusal,
)
from rotator.engine.context import EngineDeps, StepFailed, keep_lease, log, record, step_error
from rotator.ports import SecretStoreError


async def verify(deps: EngineDeps, rotation: Rotation) -> Rotation:
    policy = deps.app_policy(rotation.app_id)
    if policy is None:
        raise StepFailed("the app was taken out of the policy file during its rotation")
    if rotation.staging_version is None:
        raise StepFailed("the rotation has no staged version to verify")
    try:
        staged = await deps.vault(rotation).get_secret(
            rotation.staging_secret_name, rotation.staging_version
        )
    except SecretStoreError as exc:
        raise step_error(exc) from None
    if staged is None or staged.value is None:
        raise StepFailed(
            f"staging secret {rotation.staging_secret_name} version "
            f"{rotation.staging_version} is gone"
        )
    pem: SecretValue | None = None
    if rotation.kind is CredentialKind.CERTIFICATE:
        # Consumers may read PKCS#12; the probe signs assertions from PEM, same key.
        try:
            pem = certs.pem_for_probe(staged.value, staged.content_type)
        except certs.CertificateError as exc:
            raise StepFailed(f"staging secret {rotation.staging_secret_name}: {exc}") from None
    timing = deps.verify_timing
    started = deps.now()
    deadline = started + timedelta(seconds=policy.verify_timeout_seconds)
    progress = VerifyProgress(required=policy.verify_successes)
    last_refusal = "no attempt made"
    outage_reported = False
    while not progress.proven:
        if deps.now() >= deadline:
            raise StepFailed(
                f"verification did not get {policy.verify_successes} consecutive tokens within "
                f"{policy.verify_timeout_seconds:g} s ({progress.attempts} attempts); "
                f"last refusal: {last_refusal}"
            )
        # Verify writes nothing outside the database; its lease only has to stay alive
        # (a lease lost here makes the final record fail, never a second writer).
        rotation = await keep_lease(deps, rotation)
        if pem is not None:
            outcome = await deps.probe.try_certificate(
                deps.tenant_id, rotation.app_id, pem, policy.verify_scope
            )
        else:
            outcome = await deps.probe.try_secret(
                deps.tenant_id, rotation.app_id, staged.value, policy.verify_scope
            )
        if outcome.ok:
            verdict = judge_claims(
                outcome.claims,
                client_id=rotation.app_id,
                tenant_id=deps.tenant_id,
                expected_roles=policy.expected_roles,
                credential_kind=rotation.kind,
            )
        else:
            verdict = judge_refusal(outcome.error_code, outcome.message, outcome.status)
        unavailable = not outcome.ok and outcome.status is not None and (
            outcome.status >= 500 or outcome.status == 429)
        if unavailable and not outage_reported:
            # Attempts log at debug; an outage of the token endpoint is worth one line at
            # warning so operators see why the rotation waits.
            log.warning("token endpoint unavailable during verify; waiting for it",
                        rotation_id=rotation.id, app_id=rotation.app_id, status=outcome.status)
        outage_reported = unavailable
        if verdict.kind is AttemptKind.FATAL:
            raise StepFailed(f"verification failed: {verdict.message}")
        progress = progress.record(verdict)
        if verdict.kind is not AttemptKind.SUCCESS:
            last_refusal = verdict.message
        log.debug(
            "verify attempt", rotation_id=rotation.id, app_id=rotation.app_id,
            result=str(verdict.kind), consecutive=progress.consecutive,
        )
        deps.progress(
            f"verify: attempt {progress.attempts}: {verdict.kind} "
            f"({progress.consecutive}/{progress.required} consecutive)",
            transient=True,
        )
        if progress.proven:
            break
        if verdict.kind is AttemptKind.SUCCESS:
            delay = timing.success_interval
        else:
            raw = min(timing.refusal_cap, timing.refusal_base * 2 ** min(progress.refusals, 16))
            delay = jittered(raw, deps.rng)
        if not outcome.ok and outcome.retry_after is not None:
            # The token endpoint said when to come back: never sooner (the backoff cap
            # does not apply), and never past the deadline, where the step ends anyway.
            remaining = max(0.0, (deadline - deps.now()).total_seconds())
            asked = min(outcome.retry_after, remaining)
            if asked > delay:
                delay = asked
                throttle_waits.waited("token", delay, status=outcome.status)
        rotation = await keep_lease(deps, rotation, ahead=delay)
        await deps.sleep(delay)
    waited = (deps.now() - started).total_seconds()
    return await record(
        deps, rotation,
        rotation.advance(RotationState.VERIFIED, deps.now(), attempts=0, last_error=None,
                         next_attempt_at=None, verify_seconds=round(waited, 1),
                         verify_attempts=progress.attempts),
        step="verify",
        message=f"{progress.required} consecutive tokens after {progress.attempts} attempts "
                f"in {waited:.1f} s",
        details={"attempts": progress.attempts, "seconds": round(waited, 1)},
    )
