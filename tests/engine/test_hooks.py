"""Consumer hooks after promote: signed CloudEvents to a real receiver, commands with the
event in their environment, retries with backoff, and retirement held until delivered."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from rotator.adapters.hooks import HookClient
from rotator.alerts.runner import shared_alerts, take_snapshot
from rotator.config import HookPolicy
from rotator.domain.hooks import (
    CONTENT_TYPE,
    SIGNATURE_HEADER,
    EventType,
    HookEvent,
    event_id,
    signature_matches,
)
from rotator.domain.rotation import RotationReason
from rotator.domain.states import RotationState
from rotator.engine.driver import drive
from rotator.engine.reconcile import Reconciler
from rotator.engine.start import plan_rotation, start_rotation
from rotator.ports import HookError
from tests.support.fakes import CANARY, Crash
from tests.support.invariants import assert_invariants
from tests.support.world import World, rotate

HMAC_KEY = "hook-key-for-tests"


@dataclass
class SigningReceiver:
    """A consumer's webhook endpoint: refuses a bad signature (401) like a real one."""

    url: str = ""
    fail_next: int = 0
    events: list[dict[str, Any]] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    raw: list[bytes] = field(default_factory=list)


@pytest.fixture
def receiver() -> Iterator[SigningReceiver]:
    rec = SigningReceiver()
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            with lock:
                rec.raw.append(body)
                if self.headers.get("Content-Type") != CONTENT_TYPE:
                    status = 415
                elif not signature_matches(HMAC_KEY.encode(), body,
                                           self.headers.get(SIGNATURE_HEADER)):
                    rec.refused.append("signature")
                    status = 401
                elif rec.fail_next > 0:
                    rec.fail_next -= 1
                    status = 503
                else:
                    rec.events.append(json.loads(body))
                    status = 204
            self.send_response(status)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    rec.url = f"http://127.0.0.1:{server.server_address[1]}/rotated"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield rec
    server.shutdown()
    server.server_close()


def webhook_toml(url: str, events: str = "") -> str:
    return (f'[[app.hook]]\ntype = "webhook"\nurl = "{url}"\nsecret_env = "ORDERS_HOOK_KEY"\n'
            + (f"events = {events}\n" if events else ""))


class RecordingSender:
    def __init__(self, fail_first: int = 0) -> None:
        self.fail_first = fail_first
        self.sent: list[tuple[str, HookEvent]] = []

    async def send(self, hook: HookPolicy, event: HookEvent) -> None:
        if self.fail_first > 0:
            self.fail_first -= 1
            raise HookError("receiver down")
        self.sent.append((hook.name, event))


async def test_a_signed_cloudevent_reaches_a_real_receiver_after_promote(
    world: World, receiver: SigningReceiver
) -> None:
    app = world.directory.add_app("orders")
    old_key = app.credentials[0].key_id
    world.manage(app, app_toml=webhook_toml(receiver.url))
    sender = HookClient({"ORDERS_HOOK_KEY": HMAC_KEY})
    result = await rotate(world, app, hooks=sender)
    assert result.state is RotationState.COMPLETED
    assert receiver.refused == []
    types = [e["type"] for e in receiver.events]
    assert types == ["rotator.credential.promoted", "rotator.credential.retired"]
    promoted = receiver.events[0]
    assert promoted["specversion"] == "1.0" and promoted["source"] == "rotator"
    assert promoted["subject"] == app.app_id
    assert promoted["id"] == event_id(result.id, EventType.PROMOTED)
    assert promoted["data"] == {
        "app_id": app.app_id, "display_name": None, "kind": "secret",
        "key_id": result.new_key_id, "old_key_id": old_key, "secret_name": "orders-secret",
        "vault_url": result.vault_url, "secret_version": result.consumer_version,
        "rotation_id": result.id,
    }
    assert not any(CANARY.encode() in raw for raw in receiver.raw)  # never a secret value
    steps = [(e.step, e.outcome) for e in world.store.history(rotation_id=result.id)]
    assert ("hook", "ok") in steps
    deliveries = world.store.hooks.for_rotation(result.id)
    assert [(d.hook, d.event.type, d.delivered) for d in deliveries] == [
        ("webhook-1", EventType.PROMOTED, True), ("webhook-1", EventType.RETIRED, True)]
    assert_invariants(world, app)


async def test_a_wrong_key_is_refused_by_the_receiver_and_the_old_credential_stays(
    world: World, receiver: SigningReceiver
) -> None:
    app = world.directory.add_app("orders")
    old_key = app.credentials[0].key_id
    world.manage(app, app_toml=webhook_toml(receiver.url))
    deps = world.deps(hooks=HookClient({"ORDERS_HOOK_KEY": "not-the-key"}))
    plan = await plan_rotation(deps, app.app_id)
    rotation = await start_rotation(deps, plan, reason=RotationReason.MANUAL, retire_now=True)
    result = await drive(deps, rotation.id, retire_now=True, wait_for_retries=False)
    assert result.state is RotationState.PROMOTED
    assert old_key in app.values  # the consumer was never told: the old one stays
    assert receiver.refused == ["signature"]
    assert "waits for consumer hooks" in (result.last_error or "")
    [delivery] = world.store.hooks.for_rotation(result.id)
    assert not delivery.delivered and delivery.attempts == 1
    assert "401" in (delivery.last_error or "")


async def test_retirement_waits_until_the_promoted_event_is_taken_with_backoff(
    world: World, receiver: SigningReceiver
) -> None:
    app = world.directory.add_app("orders")
    old_key = app.credentials[0].key_id
    world.manage(app, app_toml=webhook_toml(receiver.url, '["promoted"]'))
    receiver.fail_next = 3
    deps = world.deps(hooks=HookClient({"ORDERS_HOOK_KEY": HMAC_KEY}))
    plan = await plan_rotation(deps, app.app_id)
    rotation = await start_rotation(deps, plan, reason=RotationReason.MANUAL, retire_now=True)
    started = world.clock.now()
    result = await drive(deps, rotation.id, retire_now=True)  # waits out the retries
    assert result.state is RotationState.COMPLETED and old_key not in app.values
    [delivery] = world.store.hooks.for_rotation(result.id)
    assert delivery.delivered and delivery.attempts == 4
    # 5 s, 10 s, 20 s between the attempts (the verify step's own waits come first)
    assert (world.clock.now() - started).total_seconds() >= 35
    assert [e["type"] for e in receiver.events] == ["rotator.credential.promoted"]
    errors = [e for e in world.store.history(rotation_id=result.id)
              if e.step == "hook" and e.outcome == "error"]
    assert len(errors) == 3


async def test_a_crash_between_promote_and_delivery_resends_the_same_event_id(
    world: World
) -> None:
    app = world.directory.add_app("orders")
    old_key = app.credentials[0].key_id
    world.manage(app, grace_hours=24,
                 app_toml='[[app.hook]]\ntype = "command"\nargv = ["true"]\n')
    sender = RecordingSender()

    def die_after_promote(name: str) -> None:
        if name == "after:db.promoted":
            raise Crash(name)

    deps = world.deps(hooks=sender, checkpoint=die_after_promote)
    plan = await plan_rotation(deps, app.app_id)
    rotation = await start_rotation(deps, plan, reason=RotationReason.MANUAL)
    with pytest.raises(Crash):
        await drive(deps, rotation.id)
    assert sender.sent == []
    world.store.release(rotation.id, deps.owner)
    # The daemon's reconcile pass picks it up although the grace period is not over.
    reconciler = Reconciler(world.deps(hooks=sender), max_concurrent=1)
    await reconciler.fill()
    await asyncio.gather(*reconciler.in_flight.values())
    [(_, event)] = sender.sent
    assert event.type is EventType.PROMOTED
    assert event.id == event_id(rotation.id, EventType.PROMOTED)
    current = world.store.get_rotation(rotation.id)
    assert current is not None and current.state is RotationState.PROMOTED
    assert current.next_attempt_at is None and old_key in app.values  # now the grace period
    # ... and is not sent again by the next passes.
    world.clock.advance(3600)
    again = Reconciler(world.deps(hooks=sender), max_concurrent=1)
    await again.run_pass()
    await asyncio.gather(*again.in_flight.values())
    assert len(sender.sent) == 1


async def test_an_event_sent_but_not_marked_is_sent_again_with_the_same_id(
    world: World
) -> None:
    app = world.directory.add_app("orders")
    world.manage(app, app_toml='[[app.hook]]\ntype = "command"\nargv = ["true"]\n')

    class DiesAfterSending(RecordingSender):
        async def send(self, hook: HookPolicy, event: HookEvent) -> None:
            await super().send(hook, event)
            if len(self.sent) == 1:
                raise Crash("killed after the receiver took the event")

    sender = DiesAfterSending()
    deps = world.deps(hooks=sender)
    plan = await plan_rotation(deps, app.app_id)
    rotation = await start_rotation(deps, plan, reason=RotationReason.MANUAL, retire_now=True)
    with pytest.raises(Crash):
        await drive(deps, rotation.id, retire_now=True)
    world.store.release(rotation.id, deps.owner)
    result = await drive(world.deps(hooks=sender), rotation.id, retire_now=True)
    assert result.state is RotationState.COMPLETED
    promoted = [e.id for _, e in sender.sent if e.type is EventType.PROMOTED]
    assert len(promoted) == 2 and len(set(promoted)) == 1  # at least once, one id


async def test_a_command_hook_gets_the_event_in_its_environment(
    world: World, tmp_path: Path
) -> None:
    app = world.directory.add_app("orders")
    out = tmp_path / "env.json"
    script = ("import json, os, sys; json.dump({k: v for k, v in os.environ.items() "
              "if k.startswith('ROTATOR_EVENT_')}, open(sys.argv[1], 'w'))")
    argv = json.dumps([sys.executable, "-c", script, str(out)])
    world.manage(app, app_toml=f'[[app.hook]]\ntype = "command"\nargv = {argv}\n'
                               'events = ["promoted"]\ntimeout_seconds = 30\n')
    result = await rotate(world, app, hooks=HookClient({}))
    assert result.state is RotationState.COMPLETED
    env = json.loads(out.read_text())
    assert env["ROTATOR_EVENT_TYPE"] == "rotator.credential.promoted"
    assert env["ROTATOR_EVENT_ID"] == event_id(result.id, EventType.PROMOTED)
    assert env["ROTATOR_EVENT_KEY_ID"] == result.new_key_id
    assert env["ROTATOR_EVENT_SECRET_NAME"] == "orders-secret"
    assert env["ROTATOR_EVENT_SECRET_VERSION"] == result.consumer_version
    assert not any(CANARY in v for v in env.values())


async def test_a_command_hook_does_not_get_rotators_own_secrets(
    world: World, tmp_path: Path
) -> None:
    # A hook command (kubectl, a script) needs PATH, HOME and its own settings, not the
    # rotator's client secret, database URL or the keys that sign other hooks' events.
    app = world.directory.add_app("orders")
    out = tmp_path / "env.json"
    script = "import json, os, sys; json.dump(dict(os.environ), open(sys.argv[1], 'w'))"
    argv = json.dumps([sys.executable, "-c", script, str(out)])
    world.manage(app, app_toml=f'[[app.hook]]\ntype = "command"\nargv = {argv}\n'
                               'events = ["promoted"]\ntimeout_seconds = 30\n')
    environ = {
        "PATH": os.environ.get("PATH", ""), "KUBECONFIG": "/etc/kube/config",
        "AZURE_CLIENT_SECRET": "canary-client-secret",
        "ROTATOR_DATABASE_URL": "postgresql://rotator:canary-db-password@db/rotator",
        "ORDERS_HOOK_KEY": "canary-hook-key",
    }
    result = await rotate(world, app, hooks=HookClient(environ, withheld=["ORDERS_HOOK_KEY"]))
    assert result.state is RotationState.COMPLETED
    env = json.loads(out.read_text())
    assert env["KUBECONFIG"] == "/etc/kube/config" and env["PATH"] == environ["PATH"]
    assert env["ROTATOR_EVENT_KEY_ID"] == result.new_key_id
    assert not [k for k, v in env.items() if "canary" in v], env


async def test_a_command_that_hangs_is_killed_and_retried(world: World) -> None:
    app = world.directory.add_app("orders")
    argv = json.dumps([sys.executable, "-c", "import time; time.sleep(60)"])
    world.manage(app, app_toml=f'[[app.hook]]\ntype = "command"\nargv = {argv}\n'
                               "timeout_seconds = 0.5\n")
    deps = world.deps(hooks=HookClient({}))
    plan = await plan_rotation(deps, app.app_id)
    rotation = await start_rotation(deps, plan, reason=RotationReason.MANUAL, retire_now=True)
    result = await drive(deps, rotation.id, retire_now=True, wait_for_retries=False)
    assert result.state is RotationState.PROMOTED
    [delivery] = world.store.hooks.for_rotation(result.id)
    assert "did not finish within 0.5 s" in (delivery.last_error or "")
    assert delivery.next_attempt_at is not None


async def test_a_failed_rotation_tells_the_hooks(world: World) -> None:
    app = world.directory.add_app("orders")
    world.manage(app, app_toml='[[app.hook]]\ntype = "command"\nargv = ["true"]\n')
    world.probe.refuse_first = 10_000
    sender = RecordingSender()
    result = await rotate(world, app, hooks=sender)
    assert result.state is RotationState.FAILED
    assert [e.type for _, e in sender.sent] == [EventType.FAILED]


async def test_a_command_stops_waiting_for_a_hook_that_stays_down(world: World) -> None:
    app = world.directory.add_app("orders")
    old_key = app.credentials[0].key_id
    world.manage(app, app_toml='[[app.hook]]\ntype = "command"\nargv = ["true"]\n')
    sender = RecordingSender(fail_first=1_000)
    result = await rotate(world, app, hooks=sender)  # waits for retries, but not for ever
    assert result.state is RotationState.PROMOTED and old_key in app.values
    [delivery] = world.store.hooks.for_rotation(result.id)
    assert delivery.attempts == 5  # 5 s, 10 s, 20 s, 40 s waited; the next wait is 80 s
    assert result.next_attempt_at is not None
    sender.fail_first = 0  # the receiver is back: the reconcile pass delivers and retires
    world.clock.advance(81)
    reconciler = Reconciler(world.deps(hooks=sender), max_concurrent=1)
    await reconciler.fill()
    await asyncio.gather(*reconciler.in_flight.values())
    done = world.store.get_rotation(result.id)
    assert done is not None and done.state is RotationState.COMPLETED
    assert old_key not in app.values


async def test_a_crash_right_after_retiring_does_not_lose_the_retired_event(
    world: World
) -> None:
    app = world.directory.add_app("orders")
    world.manage(app, app_toml='[[app.hook]]\ntype = "command"\nargv = ["true"]\n'
                               'events = ["retired"]\n')
    sender = RecordingSender()

    def die_after_retiring(name: str) -> None:
        if name == "after:db.completed":
            raise Crash(name)

    with pytest.raises(Crash):
        await rotate(world, app, hooks=sender, checkpoint=die_after_retiring)
    assert sender.sent == []
    reconciler = Reconciler(world.deps(hooks=sender), max_concurrent=1)
    await reconciler.run_pass()
    await reconciler.run_pass()  # and only once
    [(_, event)] = sender.sent
    assert event.type is EventType.RETIRED and event.data["old_key_id"] is not None


async def test_a_hook_removed_from_the_policy_is_not_retried(world: World) -> None:
    app = world.directory.add_app("orders")
    world.manage(app, app_toml='[[app.hook]]\ntype = "command"\nname = "old"\n'
                               'argv = ["true"]\nevents = ["retired"]\n')
    sender = RecordingSender(fail_first=1)
    result = await rotate(world, app, hooks=sender)
    [delivery] = world.store.hooks.for_rotation(result.id)
    assert not delivery.delivered
    world.manage(app)  # the hook is gone
    world.clock.advance(3600)
    reconciler = Reconciler(world.deps(hooks=sender), max_concurrent=1)
    await reconciler.run_pass()
    assert sender.sent == []
    [still] = world.store.hooks.for_rotation(result.id)
    assert still.attempts == 1


def _alert_keys(world: World) -> list[str]:
    snapshot = take_snapshot(world.store, world.policy, world.clock.now())
    return [a.key for a in shared_alerts(snapshot, world.policy)]


async def test_a_hook_being_retried_is_not_a_failing_rotation_until_it_keeps_failing(
    world: World
) -> None:
    app = world.directory.add_app("orders")
    old_key = app.credentials[0].key_id
    world.manage(app, app_toml='[[app.hook]]\ntype = "command"\nname = "restart"\n'
                               'argv = ["true"]\n')
    sender = RecordingSender(fail_first=1_000)
    result = await rotate(world, app, hooks=sender)
    [delivery] = world.store.hooks.for_rotation(result.id)
    assert result.state is RotationState.PROMOTED and delivery.attempts == 5
    # A minute and a half of retries: the rotation did its part; nobody is woken up.
    assert _alert_keys(world) == []
    world.clock.advance(15 * 60)
    reconciler = Reconciler(world.deps(hooks=sender), max_concurrent=1)
    await reconciler.run_pass()
    await asyncio.gather(*reconciler.in_flight.values())
    # Still failing after 15 minutes: the hook is alerted, not the rotation.
    keys = _alert_keys(world)
    assert keys == [f"hook-failing:{result.id}:restart:promoted"]
    snapshot = take_snapshot(world.store, world.policy, world.clock.now())
    [alert] = [a for a in shared_alerts(snapshot, world.policy) if a.key == keys[0]]
    assert "restart" in alert.subject and "not retired until it does" in alert.subject
    # The receiver is back: delivered, retired, nothing left to say.
    sender.fail_first = 0
    world.clock.advance(3600)
    again = Reconciler(world.deps(hooks=sender), max_concurrent=1)
    await again.run_pass()
    await asyncio.gather(*again.in_flight.values())
    done = world.store.get_rotation(result.id)
    assert done is not None and done.state is RotationState.COMPLETED
    assert old_key not in app.values and _alert_keys(world) == []
