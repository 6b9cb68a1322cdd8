"""`rotator status` and `rotator history`: what needs the admin now, and what happened."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

import click

from rotator.cli.app import CliApp, collector_paused, colour_on, guid, rotation_id, since, table

if TYPE_CHECKING:
    from rotator.adapters.db import SqlStore
    from rotator.cli.attention import Attention, Item

# Far more than a terminal shows, and well inside what the database's LIMIT takes.
MAX_HISTORY = 1_000_000
# The failed rotations `status --json` lists under "failed", newest first.
FAILED_SHOWN = 50
# Recent rotations read to tell a failure that still stands from one a later rotation fixed.
RECENT_ROTATIONS = 1_000


def _cell(value: str, width: int) -> str:
    return value if len(value) <= width else value[: width - 1] + "…"


def _when(value: datetime | None, now: datetime, *, future: bool = False) -> str:
    from rotator.cli.attention import age_text

    if value is None:
        return "-"
    if future:
        return "now" if value <= now else f"in {age_text(value - now)}"
    return f"{age_text(now - value)} ago"


_COLOURS = {"failed": "red", "due": "yellow", "unseen": "yellow", "in_flight": "cyan"}
_LABELS = {"failed": "FAILED", "due": "DUE", "unseen": "NOT FOUND", "in_flight": "in flight"}


def _print_attention(att: Attention, now: datetime, colour: bool) -> None:
    def styled(text: str, **style: Any) -> str:
        return click.style(text, **style) if colour else text

    scan_line = f"last scan: {att.scan.summary}"
    click.echo(scan_line if att.scan.healthy else styled(scan_line, fg="red", bold=True))
    if not att.items:
        click.echo(styled("\nnothing needs you: no failed rotations, nothing due without a "
                          "plan, nothing in flight", fg="green"))
    else:
        items = att.items
        click.echo()
        click.echo(table(
            [[_LABELS[str(i.need)], _cell(i.display_name or "?", 28), i.app_id, i.state,
              _when(i.since, now), _when(i.next_attempt_at, now, future=True),
              _cell(i.detail, 70)] for i in items],
            ["NEEDS YOU", "APP", "APP ID", "STATE", "SINCE", "NEXT", "DETAIL"],
            paint=lambda n, line: styled(line, fg=_COLOURS[str(items[n].need)]),
        ))
        todo = [i for i in items if i.actionable]
        if todo:
            click.echo("\nwhat to do:")
            for i in todo:
                who = i.display_name or i.app_id
                rot = f" (rotation {i.rotation_id})" if i.rotation_id else ""
                click.echo(f"  - {who}{rot}: {i.what_to_do}")
    if att.superseded_failures:
        click.echo(f"\n{att.superseded_failures} older failed rotation(s) were followed by a "
                   "later rotation of the same app (`rotator history --app APP_ID`)")


def gather(cli: CliApp, store: SqlStore, now: datetime) -> tuple[Attention, dict[str, Any]]:
    """What needs the admin, and the JSON `status --json` prints; closes ``store``."""
    from rotator.cli.attention import needs_attention
    from rotator.cli.rotate import rotation_json
    from rotator.domain.states import ACTIVE_STATES, RotationState

    policy = cli.loaded().policy
    try:
        active = store.list_rotations(states=sorted(ACTIVE_STATES))
        failed = store.list_rotations(states=[RotationState.FAILED], limit=FAILED_SHOWN)
        recent = store.list_rotations(limit=max(RECENT_ROTATIONS, 5 * len(policy.apps)))
        last = store.last_scan()
        last_good = store.last_successful_scan()
        inventory = store.inventory(app_ids=policy.apps)
        names = store.app_names({r.app_id for r in (*active, *failed, *recent)}
                                | set(policy.apps))
    finally:
        store.close()
    att = needs_attention(policy=policy, in_flight=active, recent=recent, inventory=inventory,
                          names=names, last_scan=last, last_good_scan=last_good, now=now)
    standing = {i.rotation_id for i in att.items if i.need == "failed"}

    def rotation_entry(r: Any) -> dict[str, Any]:
        return {**rotation_json(r), "display_name": names.get(r.app_id.lower(), ""),
                "updated_at": r.updated_at.isoformat(),
                "next_attempt_at": r.next_attempt_at.isoformat() if r.next_attempt_at else None}

    def item_json(i: Item) -> dict[str, Any]:
        return i.to_json()

    payload: dict[str, Any] = {
        "in_flight": [rotation_entry(r) for r in active],
        "failed": [{**rotation_entry(r), "superseded": r.id not in standing} for r in failed],
        "last_scan": None if last is None else {
            "id": last.id, "status": last.status,
            "started_at": last.started_at.isoformat(),
            "finished_at": last.finished_at.isoformat() if last.finished_at else None,
            "age_seconds": None if att.scan.age is None else round(att.scan.age.total_seconds()),
            "healthy": att.scan.healthy, "health": att.scan.summary,
            "apps": last.apps_seen, "credentials": last.credentials_seen,
            "unreadable": last.error_count, "error": last.error,
            # full: every app listed; delta: only what changed since the scan before.
            "mode": last.mode, "graph_requests": last.graph_requests,
            "apps_changed": last.apps_changed,
        },
        "due_not_planned": [item_json(i) for i in att.items if i.need == "due"],
        "not_in_inventory": [item_json(i) for i in att.items if i.need == "unseen"],
        "needs_attention": [item_json(i) for i in att.items],
    }
    return att, payload


@click.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def status_command(as_json: bool) -> None:
    """What needs you, most urgent first: failed rotations, credentials due with nothing
    planned, rotations in flight, and the last scan's health."""
    from datetime import UTC

    cli = CliApp(as_json=as_json, logs=False)
    with collector_paused():  # imports, settings and the schema check
        cli.loaded()
        store = cli.store()
    now = datetime.now(UTC)
    att, payload = gather(cli, store, now)
    if as_json:
        cli.emit_json(payload)
        return
    _print_attention(att, now, colour_on())


@click.command("history")
@click.option("--app", "app_id", callback=guid("an application (client) id"), default=None,
              help="Only this application (client) id.")
@click.option("--rotation", "rotation_id", callback=rotation_id, default=None,
              metavar="ROTATION_ID", help="Only this rotation (32 hex characters).")
@click.option("--since", "since_at", callback=since, default=None, metavar="WHEN",
              help="Only events since WHEN: an ISO date or date and time (UTC unless an "
              "offset is given), or a duration back from now such as 90m, 12h, 7d, 2w.")
@click.option("--limit", type=click.IntRange(1, MAX_HISTORY), default=200, show_default=True,
              help="At most this many events, the latest ones.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def history_command(app_id: str | None, rotation_id: str | None, since_at: datetime | None,
                    limit: int, as_json: bool) -> None:
    """The audit trail, oldest first."""
    cli = CliApp(as_json=as_json, logs=False)
    with collector_paused():  # imports, settings and the schema check
        cli.loaded()
        store = cli.store()
    try:
        events = store.history(app_id=app_id, rotation_id=rotation_id, since=since_at,
                               limit=limit)
        names = store.app_names({e.app_id for e in events if e.app_id})
    finally:
        store.close()

    def name_of(app: str | None) -> str:
        return names.get(app.lower(), "") if app else ""

    if as_json:
        cli.emit_json([
            {"at": e.at.isoformat(), "rotation_id": e.rotation_id, "app_id": e.app_id,
             "display_name": name_of(e.app_id) if e.app_id else None,
             "step": e.step, "outcome": e.outcome, "message": e.message, "details": e.details}
            for e in events
        ])
        return
    colour = colour_on()
    click.echo(table(
        [[e.at.isoformat()[:19], _cell(name_of(e.app_id), 24), e.app_id or "", e.step,
          e.outcome, e.rotation_id or "", e.message[:90]] for e in events],
        ["AT (UTC)", "APP", "APP ID", "STEP", "OUTCOME", "ROTATION", "MESSAGE"],
        paint=(lambda n, line: click.style(line, fg="red") if events[n].outcome == "error"
               else line) if colour else None,
    ))
