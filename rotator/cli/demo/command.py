"""The ``rotator demo`` command: set up, run, summarise, check (see the package docstring)."""

from __future__ import annotations

import asyncio
import logging
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import click

from rotator.cli.demo.consumer import Consumer, restart_argv
from rotator.cli.demo.progress import DEMO_TIMEOUT_SECONDS, run_until_finished
from rotator.cli.demo.scenario import (
    GRACE_SECONDS,
    REPORT_LAG_SECONDS,
    SCENARIO,
    TENANT_APPS,
    TENANT_SEED,
    due_noun,
    prepare,
    write_policy,
)
from rotator.cli.demo.summary import (
    completion_problems,
    consumer_lines,
    consumer_problems,
    invariant_problems,
    print_verdict,
    summary_lines,
)

PROPAGATION_SECONDS = 3.0


@click.command("demo")
@click.option("--propagation-seconds", type=float, default=PROPAGATION_SECONDS, show_default=True,
              help="How long new credentials take to reach every replica of the tenant.")
def demo_command(propagation_seconds: float) -> None:
    """Rotate due credentials of an emulated tenant, end to end, and check the result."""
    from rotator.bootstrap import load, open_store
    from rotator.emulator.runner import start_emulator
    from rotator.logs import configure

    started = time.monotonic()
    configure("console", "ERROR")
    workdir = Path(tempfile.mkdtemp(prefix="rotator-demo-"))
    db_path = workdir / "rotator.db"
    db_url = f"sqlite:///{db_path}"
    click.echo("rotator demo: an emulated Entra tenant and Key Vault, a throwaway SQLite database")
    # The scheduler's "skipped: maximum number of running instances" is the reconcile
    # pass running longer than its one-second interval, which the demo expects.
    for name in ("uvicorn", "uvicorn.error", "rotator.emulator", "apscheduler.scheduler",
                 "apscheduler.executors.default"):
        # A filter, not a level: uvicorn resets levels when a server is configured.
        logging.getLogger(name).addFilter(lambda _record: False)
    with start_emulator(apps=TENANT_APPS, seed=TENANT_SEED, propagation_seconds=propagation_seconds,
                        workdir=workdir / "emulator",
                        signin_report_lag_seconds=REPORT_LAG_SECONDS) as emu:
        apps = prepare(emu, SCENARIO)
        consumers: dict[str, Consumer] = {}
        for app in apps:
            if app.consumer:
                home = workdir / f"consumer-{app.name}"
                home.mkdir()
                consumers[app.app_id] = Consumer(emu.env, emu.base_url, app.secret_name,
                                                 app.app_id, home)
                if app.reloads:
                    app.hooks.append({"type": "command", "name": "restart-consumer",
                                      "argv": restart_argv(consumers[app.app_id].pid_file),
                                      "events": ["promoted"], "timeout_seconds": 10})
        policy_path = workdir / "policy.toml"
        write_policy(policy_path, emu.base_url, apps)
        click.echo(f"  tenant at {emu.base_url}, new credentials propagate within "
                   f"{propagation_seconds:g} s; policy {policy_path}")
        click.echo(f"  managing {len(apps)} apps whose {due_noun(apps)} are due; grace period "
                   f"{GRACE_SECONDS:g} s\n")
        environ = {**emu.env, "ROTATOR_DATABASE_URL": db_url, "ROTATOR_CONFIG": str(policy_path)}
        loaded = load(environ)
        store = open_store(loaded.settings)
        # Secret values that are gone once retired, so no one else would look for them.
        original = {c.secret_text for a in apps for c in emu.tenant.passwords(a.app_id)}
        try:
            for app in apps:
                if app.consumer:
                    consumers[app.app_id].start()
                    then = ("a hook restarts it after promote" if app.reloads else
                            "nothing restarts it, so its old credential must stay")
                    click.echo(f"  a consumer of {app.name} reads its secret once and asks for "
                               f"a token every second; {then}")
            click.echo("")
            for consumer in consumers.values():
                consumer.wait_for_tokens(1, 15)
            done = asyncio.run(run_until_finished(store, loaded, apps, started))
            for consumer in consumers.values():
                consumer.close()
            lines = summary_lines(store, apps, db_url, datetime.now(UTC))
            further = next((i for i, line in enumerate(lines) if line.startswith("Look further")),
                           len(lines)) - 1
            lines[further:further] = consumer_lines(store, apps, consumers)
            for line in lines:
                click.echo(line)
            problems = invariant_problems(emu.tenant, store, loaded.policy, db_path, original)
            latest = [store.list_rotations(app_id=a.app_id, limit=1) for a in apps]
            problems += consumer_problems(store, apps, consumers)
        finally:
            for consumer in consumers.values():
                consumer.close()
            store.close()
    problems += completion_problems(apps, latest, done=done, timeout_seconds=DEMO_TIMEOUT_SECONDS)
    raise SystemExit(print_verdict(problems, time.monotonic() - started))
