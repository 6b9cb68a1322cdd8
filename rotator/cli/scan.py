"""`rotator scan`: every credential of every app in the tenant, soonest expiry first."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import click

from rotator.cli.app import EXIT_FAILED, EXIT_OK, CliApp, days, table

if TYPE_CHECKING:
    from rotator.domain.records import InventoryRow


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def credential_json(r: InventoryRow, now: datetime) -> dict[str, Any]:
    days = r.days_left(now)
    return {
        "app_id": r.app_id,
        "object_id": r.object_id,
        "display_name": r.app_display_name,
        "key_id": r.key_id,
        "kind": str(r.kind),
        "end_date_time": _iso(r.end_at) if r.end_at else None,
        "days_left": None if days is None else round(days, 1),
        "managed": r.managed,
        "thumbprint": r.thumbprint,
        "source": str(r.source),
        "sp_object_id": r.sp_object_id,
        "usage": r.usage,
        "signing_active": r.signing_active,
        "owners": None if r.owners is None else list(r.owners),
    }


def _source(r: InventoryRow) -> str:
    """App registration, or service principal (with what its credential is for)."""
    if not r.on_service_principal:
        return "app"
    if r.saml_signing:
        return "sp:saml" + ("*" if r.signing_active else "")
    return "sp"


@click.command("scan")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("--within-days", callback=days, metavar="DAYS", default=None,
              help="Only credentials ending within N days (or already expired).")
@click.option("--full", is_flag=True,
              help="Read every app, not only what changed since the last scan.")
def scan_command(as_json: bool, within_days: float | None, full: bool) -> None:
    """Scan all app registrations and show their credentials.

    The first scan reads every app; later ones read only what changed since (Graph delta
    queries), with a full listing every full_scan_interval_hours."""
    from rotator.bootstrap import engine_deps
    from rotator.cli.progress import StatusLine, elapsed_text
    from rotator.domain.records import ScanStatus
    from rotator.engine.scan import scan

    cli = CliApp(as_json=as_json)
    loaded = cli.loaded_with_tenant()
    store = cli.store()
    seen = [0, 0]  # apps, credentials: written by the scan, read by the status line

    line = StatusLine.for_stderr(as_json=as_json)

    def counted(apps: int, credentials: int) -> None:
        seen[0], seen[1] = apps, credentials
        line.touch()

    async def go() -> Any:
        async with engine_deps(loaded, store) as deps:
            return await scan(deps, on_app=counted, full=full)

    def rate(took: float) -> str:
        return f"{seen[0] / took:,.0f} apps/s" if took >= 0.5 else "- apps/s"

    line.show(lambda: f"scanning: {seen[0]:,} apps, {seen[1]:,} credentials read · "
                      f"{rate(line.elapsed())} · {elapsed_text(line.elapsed())}")
    try:
        report = cli.run(go())
    except BaseException:
        line.close()
        raise
    took = line.elapsed()
    if report.mode == "delta":
        seen[0], seen[1] = report.apps_seen, report.credentials_seen
    line.close(f"{report.mode} scan {report.status}: {seen[0]:,} apps, {seen[1]:,} "
               f"credentials read in "
               f"{elapsed_text(took)} ({seen[0] / max(took, 0.001):,.0f} apps/s)")
    now = datetime.now(UTC)
    rows = store.inventory(within_days=within_days, now=now)
    items = [credential_json(r, now) for r in rows]
    if as_json:
        cli.emit_json({
            "scan": {"id": report.scan_id, "status": report.status, "apps": report.apps_seen,
                     "service_principals": report.service_principals_seen,
                     "credentials": report.credentials_seen,
                     "mode": report.mode, "graph_requests": report.graph_requests,
                     "apps_changed": report.apps_changed if report.mode == "delta" else None,
                     "unreadable": [{"id": i, "error": e} for i, e in report.errors],
                     "error": report.error},
            "credentials": items,
        })
    else:
        body = [
            [r.app_display_name[:32], r.app_id, _source(r), str(r.kind), r.key_id,
             _iso(r.end_at)[:19] if r.end_at else "never",
             "" if r.end_at is None else f"{r.days_left(now):.1f}",
             "yes" if r.managed else "no", (r.thumbprint or "")[:12]]
            for r in rows
        ]
        click.echo(table(body, ["APP", "APP ID", "SOURCE", "KIND", "KEY ID", "ENDS (UTC)", "DAYS",
                                "MANAGED", "THUMBPRINT"]))
        click.echo(f"\n{len(items)} credential(s) shown; {report.mode} scan {report.status}: "
                   f"{report.apps_seen} apps, {report.service_principals_seen} service "
                   f"principals, {report.credentials_seen} credentials")
    if report.status is not ScanStatus.SUCCEEDED:
        click.echo(
            f"warning: the scan {report.status}"
            + (f": {report.error}" if report.error else "")
            + (f"; {len(report.errors)} app(s) could not be read" if report.errors else "")
            + " — this list is not complete",
            err=True,
        )
        raise SystemExit(EXIT_FAILED)
    raise SystemExit(EXIT_OK)
