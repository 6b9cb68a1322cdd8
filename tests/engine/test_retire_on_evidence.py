"""retire_when = "unused": the old credential goes only when the usage report shows the
consumers moved; held until then, alerted when overdue, grace when the report is unreadable."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import datetime, timedelta

import structlog

from rotator.alerts.compose import rotation_alerts
from rotator.config import HookPolicy
from rotator.domain.hooks import EventType, HookEvent
from rotator.domain.rotation import Rotation, RotationReason
from rotator.domain.states import RotationState
from rotator.engine.driver import drive
from rotator.engine.start import plan_rotation, start_rotation
from rotator.ports import DirectoryError, UsageReportUnavailable
from tests.support.fakes import FakeApp
from tests.support.invariants import assert_invariants
from tests.support.world import World


class FakeUsage:
    """The report as rotator reads it: key id -> last sign-in; or a refusal."""

    def __init__(self) -> None:
        self.last: dict[str, datetime] = {}
        self.refuse: Exception | None = None
        self.reads = 0

    async def last_sign_ins(self, app_id: str) -> Mapping[str, datetime | None]:
        self.reads += 1
        if self.refuse is not None:
            raise self.refuse
        return dict(self.last)


class Hooks:
    def __init__(self) -> None:
        self.sent: list[HookEvent] = []

    async def send(self, hook: HookPolicy, event: HookEvent) -> None:
        self.sent.append(event)


async def _promoted(world: World, app: FakeApp, usage: FakeUsage, **policy: object
                    ) -> tuple[Rotation, Hooks]:
    world.manage(app, retire_when="unused", grace_hours=1, quiet_hours=2,
                 retire_max_wait_hours=48,
                 app_toml='[[app.hook]]\ntype = "command"\nargv = ["true"]\n'
                          'events = ["held", "retired"]\n', **policy)
    hooks = Hooks()
    deps = world.deps(usage=usage, hooks=hooks)
    plan = await plan_rotation(deps, app.app_id)
    rotation = await start_rotation(deps, plan, reason=RotationReason.MANUAL)
    promoted = await drive(deps, rotation.id)
    assert promoted.state is RotationState.PROMOTED and promoted.promoted_at is not None
    return promoted, hooks


async def _again(world: World, rotation: Rotation, usage: FakeUsage, hooks: Hooks,
                 *, retire_now: bool = False) -> Rotation:
    return await drive(world.deps(usage=usage, hooks=hooks), rotation.id, retire_now=retire_now)


def _retired_by(world: World, rotation: Rotation) -> str:
    [event] = [e for e in world.store.history(rotation_id=rotation.id)
               if e.step == "retire" and "removed" in e.message]
    found = event.details["retired_by"]
    assert isinstance(found, str)
    return found


async def test_the_old_credential_waits_until_the_consumers_moved(world: World) -> None:
    app = world.directory.add_app("orders")
    old_key = app.credentials[0].key_id
    usage = FakeUsage()
    promoted, hooks = await _promoted(world, app, usage)
    assert promoted.new_key_id is not None and promoted.promoted_at is not None
    # verify's own sign-ins came before promote: they do not count.
    usage.last = {promoted.new_key_id: promoted.promoted_at - timedelta(seconds=1),
                  old_key: promoted.promoted_at + timedelta(minutes=30)}
    world.clock.advance(2 * 3600)  # grace over
    held = await _again(world, promoted, usage, hooks)
    assert held.state is RotationState.PROMOTED and old_key in app.values
    assert held.held is not None and "has not signed in since promote" in held.held
    assert [e.type for e in hooks.sent] == [EventType.HELD]
    # The consumer moves: the new credential signs in; the old one is still seen for a while.
    usage.last[promoted.new_key_id] = world.clock.now()
    usage.last[old_key] = world.clock.now()
    world.clock.advance(3600)
    held = await _again(world, held, usage, hooks)
    assert held.held is not None and held.held.startswith("held: old credential last used at")
    assert old_key in app.values
    world.clock.advance(3600 + 60)  # now quiet for more than quiet_hours (2 h)
    done = await _again(world, held, usage, hooks)
    assert done.state is RotationState.COMPLETED and old_key not in app.values
    assert _retired_by(world, done).startswith("unused: the new credential signed in at")
    assert [e.type for e in hooks.sent] == [EventType.HELD, EventType.RETIRED]
    held_events = [e for e in world.store.history(rotation_id=done.id)
                   if e.step == "retire" and "held" in e.details]
    assert len(held_events) == 2  # the trail says when the verdict changed, not every look
    assert_invariants(world, app)


async def test_a_held_retirement_is_alerted_after_the_max_wait(world: World) -> None:
    app = world.directory.add_app("orders")
    old_key = app.credentials[0].key_id
    usage = FakeUsage()
    promoted, hooks = await _promoted(world, app, usage)
    usage.last = {old_key: world.clock.now()}
    world.clock.advance(2 * 3600)
    held = await _again(world, promoted, usage, hooks)
    assert not held.held_overdue
    assert not any(a.key.startswith("retirement-held") for a in rotation_alerts(
        [held], world.clock.now(), retrying_attempts=3, lookback=timedelta(days=7)))
    world.clock.advance(47 * 3600)
    usage.last = {old_key: world.clock.now()}
    overdue = await _again(world, held, usage, hooks)
    assert overdue.held_overdue and overdue.state is RotationState.PROMOTED
    assert old_key in app.values  # still held: an alert, not a removal
    [alert] = [a for a in rotation_alerts([overdue], world.clock.now(), retrying_attempts=3,
                                          lookback=timedelta(days=7))
               if a.key.startswith("retirement-held")]
    assert "old credential last used at" in alert.subject
    # An admin decides: --retire-now overrides the evidence rule, and says so.
    done = await _again(world, overdue, usage, hooks, retire_now=True)
    assert done.state is RotationState.COMPLETED and old_key not in app.values
    assert _retired_by(world, done) == "admin decision (--retire-now)"


async def test_an_unreadable_report_falls_back_to_the_grace_rule_and_says_so_once(
    world: World
) -> None:
    app = world.directory.add_app("orders")
    old_key = app.credentials[0].key_id
    usage = FakeUsage()
    usage.refuse = UsageReportUnavailable(
        "the credential usage report answered HTTP 403 Authorization_RequestDenied", status=403)
    promoted, hooks = await _promoted(world, app, usage)
    world.clock.advance(30 * 60)
    still = await _again(world, promoted, usage, hooks)
    assert still.state is RotationState.PROMOTED and usage.reads == 0  # grace comes first
    world.clock.advance(3600)
    with structlog.testing.capture_logs() as logs:
        done = await _again(world, still, usage, hooks)
    assert done.state is RotationState.COMPLETED and old_key not in app.values
    assert _retired_by(world, done).startswith("grace (fallback: the credential usage report "
                                               "answered HTTP 403")
    warnings = [e for e in logs if "usage report unavailable" in e["event"]]
    assert len(warnings) == 1
    alerts = [a for a in rotation_alerts([done], world.clock.now(), retrying_attempts=3,
                                         lookback=timedelta(days=7))
              if a.key == f"usage-report-unavailable:{app.app_id}"]
    assert len(alerts) == 1 and "AuditLog.Read.All" in alerts[0].subject


async def test_a_throttled_report_is_retried_not_a_fallback(world: World) -> None:
    app = world.directory.add_app("orders")
    usage = FakeUsage()
    promoted, hooks = await _promoted(world, app, usage)
    usage.refuse = DirectoryError("usage report: HTTP 429", status=429, retry_after=30)
    world.clock.advance(2 * 3600)
    waiting = await drive(world.deps(usage=usage, hooks=hooks), promoted.id,
                          wait_for_retries=False)
    assert waiting.state is RotationState.PROMOTED and waiting.rule_fallback is None
    assert waiting.next_attempt_at is not None and "429" in (waiting.last_error or "")


async def test_the_grace_rule_does_not_read_the_report(world: World) -> None:
    app = world.directory.add_app("orders")
    world.manage(app, grace_hours=1)
    usage = FakeUsage()
    deps = world.deps(usage=usage)
    plan = await plan_rotation(deps, app.app_id)
    rotation = await start_rotation(deps, plan, reason=RotationReason.MANUAL)
    await drive(deps, rotation.id)
    world.clock.advance(3601)
    done = await drive(deps, rotation.id)
    assert done.state is RotationState.COMPLETED and usage.reads == 0
    assert _retired_by(world, done) == "grace"


async def test_the_service_counts_held_retirements(world: World) -> None:
    from rotator.daemon import Daemon
    from rotator.metrics import Metrics

    app = world.directory.add_app("orders")
    old_key = app.credentials[0].key_id
    usage = FakeUsage()
    _promoted_rotation, hooks = await _promoted(world, app, usage)
    usage.last = {old_key: world.clock.now()}
    world.clock.advance(2 * 3600)
    metrics = Metrics()
    daemon = Daemon(world.deps(usage=usage, hooks=hooks), metrics=metrics, http_port=None,
                    jobs=[])
    await daemon.reconcile_once()
    await asyncio.gather(*daemon.reconciler.in_flight.values())
    await daemon.reconcile_once()
    assert b"rotator_retirements_held 1.0" in metrics.render()
