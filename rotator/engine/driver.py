"""The loop that moves one rotation through the state table, one step at a time.

Every step re-reads the world and records what it did before the next one runs,
so this loop can be killed anywhere and started again (by the CLI or the daemon).
"""

from __future__ import annotations

from datetime import timedelta

from rotator.domain.backoff import step_retry_delay
from rotator.domain.hooks import HOOK_WAIT, EventType
from rotator.domain.records import AuditOutcome
from rotator.domain.rotation import Rotation
from rotator.domain.states import BEFORE_PROMOTE, RotationState
from rotator.engine.context import (
    EngineDeps,
    LeaseLost,
    StepFailed,
    StepRetry,
    log,
    owner_is_dead,
    record,
)
from rotator.engine.create import create_and_stage
from rotator.engine.hooks import notify, notify_ended, wants
from rotator.engine.promote import promote
from rotator.engine.retire import retire, retire_due
from rotator.engine.rollback import begin_rollback, roll_back
from rotator.engine.verify import verify

# After promote nothing rolls back; a blocked retirement waits for a person and retries.
BLOCKED_RETRY = timedelta(hours=1)
# A command that waits for retries (rotator rotate) waits this long at most for a consumer
# hook to take the promoted event; after that the daemon's reconcile pass keeps trying.
HOOK_WAIT_IN_COMMAND = timedelta(minutes=1)


class RotationBusy(Exception):
    """Another live process holds this rotation's lease."""


async def advance_once(deps: EngineDeps, rotation: Rotation, *, retire_now: bool = False
                       ) -> Rotation:
    """Run the step the rotation's state calls for; record failures as data."""
    try:
        match rotation.state:
            case RotationState.PENDING | RotationState.CREATING:
                return await create_and_stage(deps, rotation)
            case RotationState.STAGED:
                return await verify(deps, rotation)
            case RotationState.VERIFIED:
                return await promote(deps, rotation, retire_now=retire_now)
            case RotationState.PROMOTED:
                waiting = await _promoted_event(deps, rotation)
                if waiting is not None:
                    return waiting
                rotation = await _current(deps, rotation.id)
                if not retire_due(rotation, deps, retire_now=retire_now):
                    return rotation
                return await retire(deps, rotation, retire_now=retire_now)
            case RotationState.RETIRING:
                return await retire(deps, rotation, retire_now=retire_now)
            case RotationState.ROLLING_BACK:
                return await roll_back(deps, rotation)
            case _:
                return rotation
    except StepRetry as exc:
        return await _after_retryable(deps, rotation.id, str(exc), exc.retry_after)
    except StepFailed as exc:
        return await _after_failure(deps, rotation.id, str(exc))


async def _promoted_event(deps: EngineDeps, rotation: Rotation) -> Rotation | None:
    """Tell the app's hooks about the promotion; the rotation to return while some
    hook has not taken it (retirement waits), ``None`` once every hook has."""
    if not wants(deps, rotation.app_id, EventType.PROMOTED):
        return None
    next_due = await notify(deps, rotation, EventType.PROMOTED)
    current = await _current(deps, rotation.id)
    if next_due is None:
        if current.next_attempt_at is not None and current.held is None and (
            current.last_error is None or current.last_error.startswith(HOOK_WAIT)
        ):
            await record(deps, current,
                   current.with_changes(deps.now(), next_attempt_at=None, last_error=None),
                   step="hook", message="every consumer hook has the promoted event",
                   outcome=AuditOutcome.INFO)
        return None
    pending = [d.hook for d in await deps.db(deps.store.hooks.for_rotation, rotation.id)
               if d.event.type is EventType.PROMOTED and not d.delivered]
    message = f"{HOOK_WAIT}: {', '.join(pending)} not yet notified"
    if current.next_attempt_at == next_due and current.last_error == message:
        return current
    return await record(deps, current,
                  current.with_changes(deps.now(), next_attempt_at=next_due, last_error=message),
                  step="hook", message=f"{message}; next attempt {next_due.isoformat()}",
                  outcome=AuditOutcome.INFO)


async def _terminal_event(deps: EngineDeps, rotation: Rotation) -> None:
    """Once a rotation ends: retired or failed, to the hooks that want it. A send that
    fails here (or a crash before it) is made up by the reconcile pass
    (``rotator.engine.hooks.deliver_due``)."""
    await notify_ended(deps, rotation)


async def _current(deps: EngineDeps, rotation_id: str) -> Rotation:
    current = await deps.db(deps.store.get_rotation, rotation_id)
    if current is None:
        raise LeaseLost(f"rotation {rotation_id} disappeared from the database")
    return current


async def _after_retryable(deps: EngineDeps, rotation_id: str, message: str,
                     retry_after: float | None) -> Rotation:
    current = await _current(deps, rotation_id)
    attempts = current.attempts + 1
    if attempts >= deps.max_step_attempts and current.state in BEFORE_PROMOTE:
        return await record(
            deps, current,
            current.advance(RotationState.ROLLING_BACK, deps.now(), attempts=attempts,
                            last_error=f"gave up after {attempts} attempts: {message}"),
            step="rollback", message=f"giving up after {attempts} attempts: {message}",
            outcome=AuditOutcome.ERROR,
        )
    if attempts >= deps.max_step_attempts and current.state is RotationState.PENDING:
        return await record(
            deps, current,
            current.advance(RotationState.FAILED, deps.now(), attempts=attempts,
                            finished_at=deps.now(), last_error=message),
            step="create", message=f"giving up after {attempts} attempts: {message}",
            outcome=AuditOutcome.ERROR,
        )
    delay = step_retry_delay(attempts, base_seconds=deps.step_backoff_seconds,
                             cap_seconds=deps.step_backoff_max_seconds,
                             retry_after=retry_after)
    return await record(
        deps, current,
        current.with_changes(deps.now(), attempts=attempts, last_error=message,
                             next_attempt_at=deps.now() + timedelta(seconds=delay)),
        step=str(current.state), message=f"will retry in {delay:.0f} s: {message}",
        outcome=AuditOutcome.ERROR,
    )


async def _after_failure(deps: EngineDeps, rotation_id: str, message: str) -> Rotation:
    current = await _current(deps, rotation_id)
    if current.state is RotationState.PENDING:
        return await record(
            deps, current,
            current.advance(RotationState.FAILED, deps.now(), finished_at=deps.now(),
                            last_error=message),
            step="create", message=f"failed: {message}", outcome=AuditOutcome.ERROR,
        )
    if current.state in BEFORE_PROMOTE:
        rolling = await begin_rollback(deps, current, message)
        return await advance_once(deps, rolling)
    # promoted / retiring / rolling_back: keep the state, wait for a person or a fix.
    return await record(
        deps, current,
        current.with_changes(deps.now(), attempts=current.attempts + 1, last_error=message,
                             next_attempt_at=deps.now() + BLOCKED_RETRY),
        step=str(current.state), message=f"blocked: {message}", outcome=AuditOutcome.ERROR,
    )


def _waiting_for_grace(rotation: Rotation, deps: EngineDeps, retire_now: bool) -> bool:
    return (
        rotation.state is RotationState.PROMOTED
        and rotation.next_attempt_at is None
        and not retire_due(rotation, deps, retire_now=retire_now)
    )


async def drive(
    deps: EngineDeps,
    rotation_id: str,
    *,
    retire_now: bool = False,
    wait_for_retries: bool = True,
) -> Rotation:
    """Advance a rotation until it ends, waits for its grace period, or (daemon) backs off."""
    claimed = await deps.db(deps.store.claim, rotation_id, deps.owner, deps.now(),
                            deps.lease_seconds)
    if claimed is None:
        holder = await deps.db(deps.store.get_rotation, rotation_id)
        if holder is not None and holder.lease_owner and owner_is_dead(holder.lease_owner):
            claimed = await deps.db(
                deps.store.take_over, rotation_id, holder.lease_owner, deps.owner, deps.now(),
                deps.lease_seconds,
            )
            if claimed is not None:
                deps.progress(f"took over from {holder.lease_owner}, which is no longer running")
    if claimed is None:
        holder = await deps.db(deps.store.get_rotation, rotation_id)
        owner = holder.lease_owner if holder else "?"
        until = holder.lease_expires_at.isoformat() if holder and holder.lease_expires_at else "?"
        raise RotationBusy(
            f"rotation {rotation_id} is being worked on by {owner} (lease until {until}); "
            "wait for it, or run the command again after the lease expires"
        )
    rotation = claimed
    try:
        while rotation.active and not _waiting_for_grace(rotation, deps, retire_now):
            if rotation.next_attempt_at is not None and rotation.next_attempt_at > deps.now():
                if not wait_for_retries or (rotation.held and not retire_now):
                    break  # a held retirement is looked at again by the reconcile pass
                if (rotation.state is RotationState.PROMOTED
                        and (rotation.last_error or "").startswith(HOOK_WAIT)
                        and rotation.next_attempt_at - deps.now() > HOOK_WAIT_IN_COMMAND):
                    break  # a hook that is down for long: the reconcile pass keeps sending
                pause = (rotation.next_attempt_at - deps.now()).total_seconds()
                deps.progress(f"waiting {pause:.0f} s before retrying ({rotation.last_error})",
                              transient=True)
                await deps.sleep(pause)
            before = rotation.state
            rotation = await advance_once(deps, rotation, retire_now=retire_now)
            if rotation.state is not before:
                await _terminal_event(deps, rotation)
            if rotation.held and rotation.state is RotationState.PROMOTED and not retire_now:
                break  # held: the evidence is looked at again later
            if rotation.state is before and rotation.next_attempt_at is None:
                break  # nothing moved and nothing scheduled: do not spin
    except LeaseLost as exc:
        log.warning("lease lost", rotation_id=rotation_id, error=str(exc))
        return await _current(deps, rotation_id)
    finally:
        await deps.db(deps.store.release, rotation_id, deps.owner)
    return rotation
