"""`rotator scan`: every credential of every app in the tenant, soonest expiry first."""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TextIO, cast

import click

from rotator.cli.app import EXIT_FAILED, EXIT_OK, CliApp, days, table

if TYPE_CHECKING:
    from rotator.adapters.db import SqlStore
    from rotator.domain.credentials import CredentialKind, CredentialSource
    from rotator.domain.records import InventoryRow
    from rotator.engine.scan import ScanReport

# The items of the listing sit two levels deep in the document, as json.dumps(indent=2)
# puts them.
_ITEM_INDENT = "    "
_WRITE_ITEMS = 2000  # pieces of text written to stdout at once


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


_string: Callable[[str], str] = json.encoder.encode_basestring_ascii


def _scalar(value: object) -> str:
    """``json.dumps(value)`` for the values a listing item holds, without its per-call
    cost: the listing writes over a dozen values for each of hundreds of thousands of
    credentials."""
    kind = value.__class__
    if kind is str:
        return _string(cast(str, value))
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if kind is float and math.isfinite(cast(float, value)):
        return float.__repr__(cast(float, value))
    return json.dumps(value)


def _item_text(item: dict[str, Any]) -> str:
    """``item`` as ``json.dumps(document, indent=2)`` writes it in the listing, byte for
    byte: that encoder runs in pure Python once it indents, and a large tenant's listing
    has hundreds of thousands of items, so their flat shape is written here."""
    inner = _ITEM_INDENT + "  "
    lines = []
    for key, value in item.items():
        if isinstance(value, list):
            text = ("[]" if not value else "[\n" + ",\n".join(
                f"{inner}  {_scalar(v)}" for v in value) + f"\n{inner}]")
        else:
            text = _scalar(value)
        lines.append(f"{inner}{_string(key)}: {text}")
    return _ITEM_INDENT + "{\n" + ",\n".join(lines) + f"\n{_ITEM_INDENT}}}"


def write_listing_json(out: TextIO, head: dict[str, Any], items: Iterable[dict[str, Any]]
                       ) -> None:
    """``{**head, "credentials": [*items]}`` as ``json.dumps(indent=2)`` would write it,
    without holding the whole text (or every item) at once."""
    opening = json.dumps({**head, "credentials": []}, indent=2, default=str)
    cut = opening.rindex("[]")
    chunk = [opening[:cut]]
    first = True
    for item in items:
        chunk.append("[\n" if first else ",\n")
        chunk.append(_item_text(item))
        first = False
        if len(chunk) >= _WRITE_ITEMS:
            out.write("".join(chunk))
            chunk = []
    chunk.append(opening[cut:] if first else "\n  ]" + opening[cut + 2:])
    chunk.append("\n")
    out.write("".join(chunk))


class HeldRows:
    """What the listing shows of each row a full scan wrote. A later row for the same
    app id and key id replaces the earlier one, as in the store. Only the listed fields
    are kept, in a plain tuple that sorts in the store's order, and in a list rather
    than keyed: a large tenant has hundreds of thousands of credentials, and the key
    tuples alone would cost tens of megabytes."""

    def __init__(self) -> None:
        self._rows: list[_Held] = []

    def add(self, rows: Sequence[InventoryRow]) -> None:
        held = self._rows
        for r in rows:
            end = r.end_at
            # The store's order: end_at ascending, never-ending last, then app id, key id
            # (a pair that is unique once duplicates go, so the rest is never compared).
            held.append((
                end is None, end or _NEVER, r.app_id.strip().lower(), r.key_id,
                r.object_id, r.app_display_name, r.kind, r.managed, r.thumbprint,
                r.source, r.sp_object_id, r.usage, r.signing_active, r.owners))

    def listing(self, within_days: float | None, now: datetime) -> list[_Held]:
        """The held rows ``store.inventory(within_days=..., now=...)`` would give, in its
        order; they are handed over, and no longer held here."""
        rows, self._rows = self._rows, []
        # A stable sort by key id keeps the rows of one key id in the order written, so
        # the last of each app id and key id is the one the store kept.
        rows.sort(key=_key_id)
        last: dict[str, _Held] = {}  # app id -> row, among rows of one key id
        kept: list[_Held] = []
        count = len(rows)
        for n, row in enumerate(rows):
            more = n + 1 < count and rows[n + 1][3] == row[3]
            if not more and not last:
                kept.append(row)  # nearly always: a key id no other row has
                continue
            last[row[2]] = row
            if not more:
                kept.extend(last.values())
                last.clear()
        del rows
        if within_days is not None:
            until = now + timedelta(days=within_days)
            kept = [r for r in kept if not r[0] and r[1] <= until]
        kept.sort()
        return kept


def _key_id(row: _Held) -> str:
    return row[3]


_NEVER = datetime.max.replace(tzinfo=UTC)
_Held = tuple[bool, datetime, str, str, str, str, "CredentialKind", bool, str | None,
              "CredentialSource", str | None, str | None, bool | None,
              tuple[str, ...] | None]


def _listed(held: _Held) -> InventoryRow:
    """A row as the listing shows it: what it does not show (start, names and hints of
    the credential, flags the listing leaves out) was not kept."""
    from rotator.domain.records import InventoryRow

    (never, end, app_id, key_id, object_id, app_name, kind, managed, thumbprint, source,
     sp_object_id, usage, signing_active, owners) = held
    return InventoryRow(
        app_id=app_id, key_id=key_id, object_id=object_id, app_display_name=app_name,
        kind=kind, display_name=None, start_at=None, end_at=None if never else end,
        thumbprint=thumbprint, managed=managed, source=source, sp_object_id=sp_object_id,
        usage=usage, signing_active=signing_active, owners=owners)


def listing_rows(report: ScanReport, held: HeldRows, store: SqlStore,
                 within_days: float | None, now: datetime
                 ) -> tuple[int, Iterator[InventoryRow]]:
    """How many rows to list after ``report``, and those rows, made one at a time: a
    full scan that succeeded wrote the whole inventory (and pruned everything else), so
    it is listed from what the scan held; after any other scan the store holds rows this
    one did not read, and it is read back."""
    from rotator.domain.records import ScanStatus

    if report.mode == "full" and report.status is ScanStatus.SUCCEEDED:
        rows = held.listing(within_days, now)
        return len(rows), map(_listed, rows)
    stored = store.inventory(within_days=within_days, now=now)
    return len(stored), iter(stored)


def table_cells(r: InventoryRow, now: datetime) -> list[str]:
    """One row of the table listing."""
    return [r.app_display_name[:32], r.app_id, _source(r), str(r.kind), r.key_id,
            _iso(r.end_at)[:19] if r.end_at else "never",
            "" if r.end_at is None else f"{r.days_left(now):.1f}",
            "yes" if r.managed else "no", (r.thumbprint or "")[:12]]


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
    held = HeldRows()

    line = StatusLine.for_stderr(as_json=as_json)

    def counted(apps: int, credentials: int) -> None:
        seen[0], seen[1] = apps, credentials
        line.touch()

    async def go() -> Any:
        async with engine_deps(loaded, store) as deps:
            return await scan(deps, on_app=counted, full=full, on_rows=held.add)

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
    count, rows = listing_rows(report, held, store, within_days, now)
    if as_json:
        write_listing_json(sys.stdout, {
            "scan": {"id": report.scan_id, "status": report.status, "apps": report.apps_seen,
                     "service_principals": report.service_principals_seen,
                     "credentials": report.credentials_seen,
                     "mode": report.mode, "graph_requests": report.graph_requests,
                     "apps_changed": report.apps_changed if report.mode == "delta" else None,
                     "unreadable": [{"id": i, "error": e} for i, e in report.errors],
                     "error": report.error},
        }, (credential_json(r, now) for r in rows))
    else:
        body = [table_cells(r, now) for r in rows]
        click.echo(table(body, ["APP", "APP ID", "SOURCE", "KIND", "KEY ID", "ENDS (UTC)", "DAYS",
                                "MANAGED", "THUMBPRINT"]))
        click.echo(f"\n{count} credential(s) shown; {report.mode} scan {report.status}: "
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
