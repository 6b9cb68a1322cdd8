"""What the demo prints at the end: the summary, then the verdict on the invariants."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from rotator.adapters.db import SqlStore
    from rotator.cli.demo.consumer import Consumer
    from rotator.cli.demo.scenario import DemoApp
    from rotator.config import Policy
    from rotator.domain.rotation import Rotation
    from rotator.emulator.tenant import Tenant


def summary_lines(store: SqlStore, apps: list[DemoApp], db_url: str, now: datetime) -> list[str]:
    from rotator.domain.states import RotationState

    out: list[str] = ["", "Summary", "-------", "Due when the demo started:"]
    for app in apps:
        out.append(f"  {app.name:<24} {app.kind:<11} {app.due_reason}")
    out += ["", "Rotated:"]
    rotations: list[Rotation] = []
    for app in apps:
        for r in store.list_rotations(app_id=app.app_id, limit=1):
            rotations.append(r)
            waited = "?" if r.verify_seconds is None else f"{r.verify_seconds:.1f}"
            attempts = "?" if r.verify_attempts is None else r.verify_attempts
            out.append(
                f"  {app.name:<24} {r.state:<10} new {r.kind} {r.new_key_id or '-'}; verify "
                f"waited {waited} s for propagation ({attempts} token requests)"
                + (f"; error: {r.last_error}" if r.last_error and not r.new_key_id else "")
            )
    out += ["", "Retired (removed after the grace period, or once unused):"]
    for app, r in zip(apps, rotations, strict=False):
        if r.state is RotationState.COMPLETED and r.old_key_id:
            out.append(f"  {app.name:<24} {r.kind} {r.old_key_id}")
    expiring = [
        row for row in store.inventory(within_days=30, now=now) if not row.managed
    ]
    out += ["", f"Unmanaged and expiring within 30 days (or expired): {len(expiring)} credentials"]
    for row in expiring[:8]:
        days = (row.end_at - now).total_seconds() / 86400 if row.end_at else 0.0
        state = "expired" if days < 0 else f"{days:5.1f} days left"
        out.append(f"  {row.app_display_name:<24} {row.kind:<11} {row.key_id}  {state}")
    if len(expiring) > 8:
        out.append(f"  ... and {len(expiring) - 8} more (`rotator scan --within-days 30`)")
    out += [
        "",
        "Look further (the demo's database is kept):",
        f"  export ROTATOR_DATABASE_URL={db_url}",
        "  rotator status              # what needs you (failed, due, in flight), the last scan",
        "  rotator history             # the audit trail, step by step",
        "  rotator serve               # the same scheduler as a service; metrics on "
        "http://localhost:9464/metrics",
    ]
    return out


def invariant_problems(tenant: Tenant, store: SqlStore, policy: Policy, db_path: Path,
                       known_secrets: Iterable[str]) -> list[str]:
    """The invariants (:mod:`rotator.emulator.invariants`) over every managed app, with no
    secret value in the database files (``known_secrets``: values already retired)."""
    from rotator.emulator.invariants import check_tenant, database_files, managed_apps

    return check_tenant(tenant, store, managed_apps(policy), places=database_files(db_path),
                        known_secrets=known_secrets)


def completion_problems(apps: Sequence[DemoApp], latest: Sequence[Sequence[Rotation]], *,
                        done: bool, timeout_seconds: float) -> list[str]:
    """What the demo set out to do and did not: every due credential rotated and retired."""
    from rotator.domain.states import RotationState

    problems = []
    if not done:
        problems.append(f"not every due credential was rotated and retired within "
                        f"{timeout_seconds:g} s")
    for app, rotations in zip(apps, latest, strict=True):
        if not app.reloads:
            if not rotations or not rotations[0].held:
                problems.append(f"{app.name}: its consumer never moved, yet the old "
                                "credential's retirement was not held")
            continue
        if not rotations or rotations[0].state is not RotationState.COMPLETED:
            problems.append(f"{app.name}: rotation did not complete")
    return problems


def print_verdict(problems: Sequence[str], elapsed: float) -> int:
    """Says whether the invariants hold; the exit code (1 when anything is broken)."""
    click.echo("")
    if problems:
        click.echo(f"Invariants BROKEN ({len(problems)}):", err=True)
        for problem in problems:
            click.echo(f"  - {problem}", err=True)
        return 1
    click.echo("Invariants hold: every managed app has a working credential, each consumer "
               "secret holds a current one, no orphaned credentials, no secret value in the "
               "database.")
    click.echo(f"Done in {elapsed:.1f} s.")
    return 0


def _moves(store: SqlStore, app: DemoApp, consumer: Consumer
           ) -> tuple[Rotation | None, datetime | None, datetime | None, str | None]:
    """(rotation, when the consumer first used the new credential, when the old one was
    removed, by which rule)."""
    rotations = store.list_rotations(app_id=app.app_id, limit=1)
    if not rotations:
        return None, None, None, None
    r = rotations[0]
    new = consumer.tokens(r.new_key_id) if r.new_key_id else []
    moved = datetime.fromisoformat(new[0]["at"]) if new else None
    removed_at, rule = None, None
    for event in store.history(rotation_id=r.id):
        if event.step == "retire" and "removed" in event.message:
            removed_at = event.at
            found = event.details.get("retired_by")
            rule = found if isinstance(found, str) else None
    return r, moved, removed_at, rule


def consumer_lines(store: SqlStore, apps: Sequence[DemoApp],
                   consumers: Mapping[str, Consumer]) -> list[str]:
    out: list[str] = []
    for app in apps:
        consumer = consumers.get(app.app_id)
        if consumer is None:
            continue
        r, moved, removed_at, rule = _moves(store, app, consumer)
        promoted = r.promoted_at if r is not None else None
        started = ("restarted by the hook after promote" if app.reloads else
                   "never reloaded: nothing restarts it")
        out += ["", f"Consumer of {app.name} (read its secret once, a token every second):",
                f"  {len(consumer.tokens())} tokens, {len(consumer.refusals())} refused; "
                f"started {consumer.starts} times ({started})"]
        if r is not None and r.held:
            out.append(f"  retirement held, the old credential kept — {r.held}; rotator "
                       "alerts after retire_max_wait_hours, `rotator rotate --retire-now` "
                       "overrides")
        if promoted is not None and moved is not None:
            out.append(f"  moved to the new credential {(moved - promoted).total_seconds():.1f}"
                       " s after promote")
        if promoted is not None and removed_at is not None:
            out.append(f"  old credential removed {(removed_at - promoted).total_seconds():.1f}"
                       f" s after promote, by the rule: {rule or '?'}")
    return out


def consumer_problems(store: SqlStore, apps: Sequence[DemoApp],
                      consumers: Mapping[str, Consumer]) -> list[str]:
    """A consumer refused, or its old credential removed before it moved."""
    problems = []
    for app in apps:
        consumer = consumers.get(app.app_id)
        if consumer is None:
            continue
        refused = consumer.refusals()
        if refused:
            problems.append(f"{app.name}: its consumer was refused {len(refused)} times "
                            f"(first: {refused[0].get('error')})")
        _r, moved, removed_at, _rule = _moves(store, app, consumer)
        if removed_at is not None and (moved is None or moved > removed_at):
            problems.append(f"{app.name}: the old credential was removed before its "
                            "consumer moved")
    return problems
