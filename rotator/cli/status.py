"""`rotator status` and `rotator history`: what is in flight, what failed, what happened."""

from __future__ import annotations

import click

from rotator.cli.app import CliApp, guid, table

# Far more than a terminal shows, and well inside what the database's LIMIT takes.
MAX_HISTORY = 1_000_000


@click.command("status")
@click.option("--json", "as_json", is_flag=True)
def status_command(as_json: bool) -> None:
    """Rotations in flight and recent failed ones."""
    from rotator.cli.rotate import rotation_json
    from rotator.domain.states import ACTIVE_STATES, RotationState

    cli = CliApp(as_json=as_json)
    cli.loaded()
    store = cli.store()
    active = store.list_rotations(states=sorted(ACTIVE_STATES))
    failed = store.list_rotations(states=[RotationState.FAILED], limit=50)
    last = store.last_scan()
    if as_json:
        cli.emit_json({
            "in_flight": [rotation_json(r) for r in active],
            "failed": [rotation_json(r) for r in failed],
            "last_scan": None if last is None else {
                "id": last.id, "status": last.status,
                "started_at": last.started_at.isoformat(),
                "finished_at": last.finished_at.isoformat() if last.finished_at else None,
            },
        })
        return
    if last is None:
        click.echo("no scan has run yet (run `rotator scan`)")
    else:
        click.echo(f"last scan: {last.status} at {last.started_at.isoformat()}")
    for title, rows in (("in flight", active), ("failed", failed)):
        click.echo(f"\n{title}: {len(rows)}")
        if rows:
            click.echo(table(
                [[r.id, r.app_id, str(r.state), r.updated_at.isoformat()[:19],
                  (r.held or r.last_error or "")[:90]] for r in rows],
                ["ROTATION", "APP ID", "STATE", "UPDATED (UTC)", "HELD / LAST ERROR"],
            ))


@click.command("history")
@click.option("--app", "app_id", callback=guid("an application (client) id"), default=None,
              help="Only this application (client) id.")
@click.option("--rotation", "rotation_id", default=None, help="Only this rotation.")
@click.option("--limit", type=click.IntRange(1, MAX_HISTORY), default=200, show_default=True,
              help="At most this many events, the latest ones.")
@click.option("--json", "as_json", is_flag=True)
def history_command(app_id: str | None, rotation_id: str | None, limit: int,
                    as_json: bool) -> None:
    """The audit trail, oldest first."""
    cli = CliApp(as_json=as_json)
    cli.loaded()
    store = cli.store()
    events = store.history(app_id=app_id, rotation_id=rotation_id, limit=limit)
    if as_json:
        cli.emit_json([
            {"at": e.at.isoformat(), "rotation_id": e.rotation_id, "app_id": e.app_id,
             "step": e.step, "outcome": e.outcome, "message": e.message, "details": e.details}
            for e in events
        ])
        return
    click.echo(table(
        [[e.at.isoformat()[:19], e.step, e.outcome, (e.rotation_id or "")[:12],
          e.message[:90]] for e in events],
        ["AT (UTC)", "STEP", "OUTCOME", "ROTATION", "MESSAGE"],
    ))
