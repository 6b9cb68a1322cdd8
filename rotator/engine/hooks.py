"""Consumer hooks: tell an app's consumers what a rotation did, at least once.

Each event is recorded for each hook that wants it before it is sent (insert, then
send, then mark), with an id derived from the rotation and event type, so a crash
anywhere re-sends the very same event. A failed send is retried with backoff and
never given up; every attempt is in the audit trail (``rotator history``).

The promoted event gates retirement: the old credential is not removed while a
hook of the app has not yet taken it (see ``rotator.engine.driver``).
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from rotator.domain.hooks import EventType, HookDelivery, HookEvent, hook_retry_delay, make_event
from rotator.domain.records import AuditOutcome
from rotator.domain.rotation import Rotation
from rotator.domain.states import RotationState
from rotator.engine.context import EngineDeps, log
from rotator.ports import HookError

# How many due deliveries one reconcile pass re-sends.
DUE_LIMIT = 200
# Rotations that ended this recently are checked for a terminal event never recorded
# (the process died between the last state change and recording the event).
CATCH_UP = timedelta(days=1)
CATCH_UP_LIMIT = 500


async def event_for(deps: EngineDeps, rotation: Rotation, event_type: EventType) -> HookEvent:
    """The event of ``rotation``; its time is when the rotation reached the state."""
    rows = await deps.db(deps.store.inventory, app_id=rotation.app_id)
    display_name = rows[0].app_display_name if rows else None
    return make_event(
        event_type,
        rotation_id=rotation.id,
        app_id=rotation.app_id,
        at=rotation.updated_at,
        display_name=display_name,
        kind=str(rotation.kind),
        key_id=rotation.new_key_id,
        old_key_id=rotation.old_key_id,
        secret_name=rotation.secret_name,
        vault_url=rotation.vault_url,
        secret_version=rotation.consumer_version,
    )


def wants(deps: EngineDeps, app_id: str, event_type: EventType) -> bool:
    policy = deps.app_policy(app_id)
    return policy is not None and any(h.wants(event_type) for h in policy.hooks)


async def notify(deps: EngineDeps, rotation: Rotation, event_type: EventType) -> datetime | None:
    """Send ``event_type`` of ``rotation`` to every hook that wants it and has not taken it.

    Returns ``None`` when every such hook has it, else when the next attempt is due.
    """
    policy = deps.app_policy(rotation.app_id)
    hooks = [h for h in policy.hooks if h.wants(event_type)] if policy is not None else []
    if not hooks:
        return None
    event: HookEvent | None = None
    next_due: datetime | None = None
    for hook in hooks:
        existing = [d for d in await deps.db(deps.store.hooks.for_rotation, rotation.id)
                    if d.hook == hook.name and d.event.type is event_type]
        if existing:
            delivery = existing[0]
        else:
            event = event or await event_for(deps, rotation, event_type)
            delivery = await deps.db(deps.store.hooks.ensure, hook.name, event, rotation.id,
                                     deps.now())
        if delivery.delivered:
            continue
        if delivery.next_attempt_at is not None and delivery.next_attempt_at > deps.now():
            next_due = _earliest(next_due, delivery.next_attempt_at)
            continue
        after = await attempt(deps, delivery)
        if not after.delivered:
            next_due = _earliest(next_due, after.next_attempt_at or deps.now())
    return next_due


async def attempt(deps: EngineDeps, delivery: HookDelivery) -> HookDelivery:
    """One send of a recorded delivery, recorded with its outcome in the audit trail."""
    policy = deps.app_policy(delivery.app_id)
    hook = next((h for h in policy.hooks if h.name == delivery.hook), None) if policy else None
    event = delivery.event
    what = f"{event.type.short} event {event.id} to hook {delivery.hook}"
    if hook is None:
        error = f"hook {delivery.hook} is no longer in the policy"
    else:
        try:
            # The sender applies the hook's timeout; this one only guards against a hang.
            await asyncio.wait_for(deps.hooks.send(hook, event), hook.timeout_seconds + 5)
        except (HookError, TimeoutError) as exc:
            error = str(exc) or "timed out"
        else:
            done = await deps.db(deps.store.hooks.mark_delivered, delivery.hook, event.id,
                                 deps.now())
            await deps.db(deps.store.append_audit,
                deps.now(), "hook", AuditOutcome.OK,
                f"delivered {what} (attempt {done.attempts})",
                rotation_id=delivery.rotation_id, app_id=delivery.app_id,
                details={"hook": delivery.hook, "event_id": event.id,
                         "event_type": event.type.value, "attempts": done.attempts},
            )
            deps.progress(f"hook: delivered {what}")
            log.info("hook delivered", hook=delivery.hook, event_id=event.id,
                     event_type=event.type.value, rotation_id=delivery.rotation_id)
            return done
    delay = hook_retry_delay(delivery.attempts + 1)
    failed = await deps.db(deps.store.hooks.mark_failed,
        delivery.hook, event.id, deps.now(), error, deps.now() + delay
    )
    await deps.db(deps.store.append_audit,
        deps.now(), "hook", AuditOutcome.ERROR,
        f"could not deliver {what} (attempt {failed.attempts}): {error}; "
        f"retrying in {delay.total_seconds():.0f} s",
        rotation_id=delivery.rotation_id, app_id=delivery.app_id,
        details={"hook": delivery.hook, "event_id": event.id, "event_type": event.type.value,
                 "attempts": failed.attempts, "error": error},
    )
    deps.progress(f"hook: could not deliver {what}: {error}")
    log.warning("hook delivery failed", hook=delivery.hook, event_id=event.id,
                event_type=event.type.value, rotation_id=delivery.rotation_id, error=error)
    return failed


TERMINAL_EVENTS = {RotationState.COMPLETED: EventType.RETIRED,
                   RotationState.FAILED: EventType.FAILED}


async def notify_ended(deps: EngineDeps, rotation: Rotation) -> None:
    """The retired or failed event of a rotation that ended, to the hooks that want it."""
    event_type = TERMINAL_EVENTS.get(rotation.state)
    if event_type is None or not wants(deps, rotation.app_id, event_type):
        return
    if event_type is EventType.RETIRED and (
        rotation.consumer_version is None or rotation.old_key_id is None
    ):
        return  # nothing was retired
    await notify(deps, rotation, event_type)


async def catch_up(deps: EngineDeps) -> None:
    """Record (and send) the terminal events of recently ended rotations that have none:
    a crash right after the last state change must not lose them."""
    if not any(p.hooks for p in deps.policy.apps.values()):
        return
    since = deps.now() - CATCH_UP
    for rotation in await deps.db(deps.store.list_rotations, states=list(TERMINAL_EVENTS),
                                              limit=CATCH_UP_LIMIT):
        event_type = TERMINAL_EVENTS[rotation.state]
        if (rotation.finished_at or rotation.updated_at) < since or not wants(
            deps, rotation.app_id, event_type
        ):
            continue
        recorded = {d.hook for d in await deps.db(deps.store.hooks.for_rotation, rotation.id)
                    if d.event.type is event_type}
        policy = deps.app_policy(rotation.app_id)
        wanted = {h.name for h in policy.hooks if h.wants(event_type)} if policy else set()
        if wanted - recorded:
            await notify_ended(deps, rotation)


async def deliver_due(deps: EngineDeps, limit: int = DUE_LIMIT) -> int:
    """Re-send pending deliveries whose retry is due (events of rotations that already
    ended, mostly), after recording any terminal event a crash lost; returns how many
    were delivered."""
    await catch_up(deps)
    delivered = 0
    for delivery in await deps.db(deps.store.hooks.due, deps.now(), limit):
        policy = deps.app_policy(delivery.app_id)
        if policy is None or all(h.name != delivery.hook for h in policy.hooks):
            continue  # the hook (or the app) left the policy: nobody to tell any more
        if (await attempt(deps, delivery)).delivered:
            delivered += 1
    return delivered


def _earliest(a: datetime | None, b: datetime) -> datetime:
    return b if a is None or b < a else a
