"""The demo's run: the service's own scheduler and engine, each audit event printed once
as it is written, until every managed app's rotation has finished (or time is up)."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from rotator.adapters.db import SqlStore
    from rotator.bootstrap import Loaded
    from rotator.cli.demo.scenario import DemoApp

DEMO_TIMEOUT_SECONDS = 50.0


def _fmt_delta(seconds: float) -> str:
    return f"{seconds:5.1f}s"


class Progress:
    """Prints each audit event once, as it is written."""

    def __init__(self, store: SqlStore, names: dict[str, str], started: float) -> None:
        self.store = store
        self.names = names
        self.started = started
        self.seen: set[int] = set()
        self.width = max((len(n) for n in names.values()), default=10)

    def poll(self) -> None:
        for event in self.store.history(limit=200):
            if event.id in self.seen:
                continue
            self.seen.add(event.id)
            if event.step == "scan":
                who = "(tenant)"
            elif event.app_id in self.names:
                who = self.names[event.app_id]
            else:
                continue
            mark = {"ok": " ", "info": " ", "error": "!"}.get(str(event.outcome), " ")
            click.echo(f"  {_fmt_delta(time.monotonic() - self.started)} {mark} "
                       f"{who:<{self.width}}  {event.step:<8} {event.message}")


async def run_until_finished(store: SqlStore, loaded: Loaded, apps: list[DemoApp],
                             started: float) -> bool:
    """Run the daemon until every app's latest rotation has finished (or, for a consumer
    that never reloads, its retirement is held); False on timeout."""
    from rotator.bootstrap import engine_deps
    from rotator.daemon import Daemon, instrument
    from rotator.metrics import Metrics

    names = {a.app_id: a.name for a in apps}
    progress = Progress(store, names, started)
    metrics = Metrics()
    async with engine_deps(loaded, store) as deps:
        instrument(deps, metrics,
                   graph_writes_per_minute=loaded.policy.daemon.graph_writes_per_minute)
        daemon = Daemon(deps, metrics=metrics, http_host="127.0.0.1", http_port=0,
                        stop_grace_seconds=3)
        runner = asyncio.create_task(daemon.run())
        await daemon.started.wait()
        click.echo(f"  metrics: http://127.0.0.1:{daemon.bound_port}/metrics "
                   "(while the demo runs)\n")
        done = False
        deadline = time.monotonic() + DEMO_TIMEOUT_SECONDS
        while time.monotonic() < deadline and not runner.done():
            await asyncio.sleep(0.5)
            progress.poll()
            finished = 0
            for app in apps:
                latest = store.list_rotations(app_id=app.app_id, limit=1)
                # A consumer that never reloads keeps its old credential in use: its
                # retirement being held is where that rotation rests.
                if latest and (not latest[0].active or (not app.reloads and latest[0].held)):
                    finished += 1
            if finished == len(apps):
                done = True
                break
        daemon.request_stop()
        await runner
        progress.poll()
        return done
