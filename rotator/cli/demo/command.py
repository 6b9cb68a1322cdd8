"""The ``rotator demo`` command: set up, run, summarise, check (see the package docstring)."""

from __future__ import annotations

import asyncio
import logging
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import click

from rotator.cli.demo.progress import DEMO_TIMEOUT_SECONDS, run_until_finished
from rotator.cli.demo.scenario import (
    GRACE_SECONDS,
    SCENARIO,
    TENANT_APPS,
    TENANT_SEED,
    due_noun,
    prepare,
    write_policy,
)
from rotator.cli.demo.summary import (
    completion_problems,
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
    for name in ("uvicorn", "uvicorn.error", "rotator.emulator"):
        # A filter, not a level: uvicorn resets levels when a server is configured.
        logging.getLogger(name).addFilter(lambda _record: False)
    with start_emulator(apps=TENANT_APPS, seed=TENANT_SEED, propagation_seconds=propagation_seconds,
                        workdir=workdir / "emulator") as emu:
        apps = prepare(emu, SCENARIO)
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
            done = asyncio.run(run_until_finished(store, loaded, apps, started))
            for line in summary_lines(store, apps, db_url, datetime.now(UTC)):
                click.echo(line)
            problems = invariant_problems(emu.tenant, store, loaded.policy, db_path, original)
            latest = [store.list_rotations(app_id=a.app_id, limit=1) for a in apps]
        finally:
            store.close()
    problems += completion_problems(apps, latest, done=done, timeout_seconds=DEMO_TIMEOUT_SECONDS)
    raise SystemExit(print_verdict(problems, time.monotonic() - started))
