"""Real rotations (engine, SQLite, fake services) with alerting beside them.

Secrets in the fake tenant start with CANARY: none may reach a message, a
report or the alert table. A dead channel must not hold a rotation up.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from rotator.alerts.runner import alert_pass
from rotator.config import load_policy, load_settings
from rotator.domain.rotation import RotationReason
from rotator.domain.states import RotationState
from rotator.engine.driver import drive
from rotator.engine.scan import scan
from rotator.engine.start import plan_rotation, start_rotation
from rotator.report.render import render_csv, render_html, render_json
from rotator.report.source import load_report
from tests.support.fakes import CANARY
from tests.support.receivers import HttpReceiver
from tests.support.world import VAULT, World


def _with_alerts(world: World, toml: str) -> None:
    path = world.tmp / "policy.toml"
    path.write_text(path.read_text() + toml)
    world.policy = load_policy(path, load_settings({"ROTATOR_VAULT_URL": VAULT}))


async def test_rotation_completes_while_a_channel_is_dead_and_no_secret_leaks(
    world: World, http_receiver: HttpReceiver, blackhole_url: str, tmp_path: Path
) -> None:
    orders = world.directory.add_app("orders", secret_days_left=5)
    world.directory.add_app("billing", secret_days_left=-2)
    world.manage(orders)
    _with_alerts(world, f"""
[alerts]
digest = "none"
[[alerts.channel]]
type = "webhook"
name = "good"
url = "{http_receiver.url}/hook"
[[alerts.channel]]
type = "slack"
name = "silent"
url = "{blackhole_url}"
timeout_seconds = 1
""")
    assert world.policy is not None
    deps = world.deps()
    await scan(deps)

    async def rotate() -> RotationState:
        plan = await plan_rotation(deps, orders.app_id)
        rotation = await start_rotation(deps, plan, reason=RotationReason.MANUAL, retire_now=True)
        return (await drive(deps, rotation.id, retire_now=True)).state

    state, report = await asyncio.gather(
        rotate(), alert_pass(world.store, world.policy, world.clock.now())
    )
    assert state is RotationState.COMPLETED
    by_name = {c.name: c for c in report.channels}
    assert by_name["good"].alerts_sent >= 2 and by_name["silent"].failed
    await scan(deps)
    after = await alert_pass(world.store, world.policy, world.clock.now())

    texts = [r.raw.decode() for r in http_receiver.requests]
    texts.append(json.dumps(report.to_json()) + json.dumps(after.to_json()))
    data = load_report(world.store, world.policy, world.clock.now())
    texts += [render_html(data), render_csv(data), render_json(data)]
    texts += [d.alert.subject + json.dumps(dict(d.alert.details)) + (d.last_error or "")
              for d in world.store.alerts.deliveries(include_digests=True)]
    secrets = [v for app in world.directory.apps.values() for v in app.values.values()]
    assert secrets and all(s.startswith(CANARY) for s in secrets)
    joined = "\n".join(texts)
    assert CANARY not in joined
    assert blackhole_url not in joined
    assert "expired on" in joined and "billing" in joined
    assert any(r.state is RotationState.COMPLETED for r in data.rotations)
