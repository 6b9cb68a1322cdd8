"""scan: read every app registration, record the credential inventory and the run.

A scan that fails part-way is recorded as failed (or partial when only some apps
could not be read) — never as a clean run that found nothing expiring.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from rotator.domain.credentials import CredentialSource
from rotator.domain.records import AuditOutcome, DeltaLinks, InventoryRow, ScanStatus
from rotator.engine.context import EngineDeps, log
from rotator.ports import DeltaRound, DirectoryError, ScanItem

BATCH = 2000
RESOURCES = ("applications", "servicePrincipals")


@dataclass
class ScanReport:
    scan_id: str
    status: ScanStatus
    apps_seen: int = 0
    credentials_seen: int = 0
    errors: list[tuple[str | None, str]] = field(default_factory=list)
    error: str | None = None
    service_principals_seen: int = 0
    mode: str = "full"  # or "delta": only what changed since the last scan was read
    graph_requests: int = 0
    apps_changed: int = 0  # delta: app registrations and service principals changed


def _compact(value: str) -> int | str:
    # Graph's ids are GUIDs; as ints they take a third of the memory of their text.
    try:
        return int(value.replace("-", ""), 16)  # uuid.UUID() costs four times as much
    except ValueError:
        return value


def _expand(value: int | str) -> str:
    return str(uuid.UUID(int=value)) if isinstance(value, int) else value


async def scan(
    deps: EngineDeps, *, on_app: Callable[[int, int], None] | None = None,
    on_started: Callable[[str], None] | None = None,
    full: bool = False,
    on_rows: Callable[[Sequence[InventoryRow]], None] | None = None,
) -> ScanReport:
    """Scan the tenant's app registrations and service principals; ``on_app(apps,
    credentials)`` is told the running totals after each app is read (an admin's terminal
    shows them as it goes), and ``on_started(scan_id)`` the scan's id once it is
    recorded (the service's scan turn names it, so a replica taking the turn over
    can close it).

    Incremental when it can be: with the delta links a full scan stored less than
    ``full_scan_interval_hours`` ago, only what changed since is read and applied. A full
    listing runs instead when ``full`` is asked, when no links are stored, when the last
    full listing is older than the interval, and when Graph says a link is no longer
    valid (expired, or its sync state is gone).

    ``on_rows`` is given each batch of inventory rows a full listing writes, in the order
    written (a later row for the same app id and key id replaces the earlier one, as in
    the store): after a full scan that succeeded they are the whole inventory, so the
    command line lists them without reading them back."""
    now = deps.now()
    scan_id = await deps.db(deps.store.start_scan, now)
    if on_started is not None:
        on_started(scan_id)
    report = ScanReport(scan_id=scan_id, status=ScanStatus.RUNNING)
    requests_before = deps.directory.list_requests()
    links: dict[str, str] | None = None
    try:
        stored = None if full else await _incremental_from(deps, now)
        if stored is not None:
            report.mode = "delta"
            try:
                links = await _incremental(deps, report, stored, now)
            except DirectoryError as exc:
                # Time may fix a throttled or failing Graph: the scan fails and the next one
                # follows the same link. A link Graph no longer knows (410 syncStateNotFound),
                # or refuses for good, is replaced by a full listing now.
                if exc.transient and not exc.resync_required:
                    raise
                report.mode = "full"
                log.warning("the delta link cannot be followed; reading every app",
                            scan_id=scan_id, error=str(exc))
                report.errors.clear()
                report.apps_seen = report.credentials_seen = report.apps_changed = 0
        if report.mode == "full":
            links = await _track_changes(deps)
            await _full(deps, report, on_app, now, on_rows)
    except asyncio.CancelledError:
        # The service is stopping. An inventory write already in its thread carries on
        # and lands (its rows are true); nothing is pruned, and the run is closed as
        # interrupted rather than left running.
        report.status = ScanStatus.INTERRUPTED
        report.error = "the service stopped before the scan read every app"
        report.graph_requests = deps.directory.list_requests() - requests_before
        try:
            await _finish(deps, report, None)
        except Exception as exc:  # noqa: BLE001 - stopping all the same
            log.warning("could not mark the interrupted scan", scan_id=scan_id,
                        error=type(exc).__name__)
        raise
    except Exception as exc:  # noqa: BLE001 - a scan that dies is recorded, never left running
        report.status = ScanStatus.FAILED
        if isinstance(exc, DirectoryError):
            report.error = str(exc)
        else:
            first_line = (str(exc).splitlines() or [""])[0][:300]
            report.error = f"scan stopped by {type(exc).__name__}: {first_line}"
            log.error("scan stopped by an unexpected error", scan_id=scan_id,
                      error=report.error)
    if report.status is not ScanStatus.FAILED:
        report.status = ScanStatus.PARTIAL if report.errors else ScanStatus.SUCCEEDED
    report.graph_requests = deps.directory.list_requests() - requests_before
    await _finish(deps, report, links)
    return report


async def _incremental_from(deps: EngineDeps, now: datetime) -> DeltaLinks | None:
    """The stored delta links, when an incremental scan may go on from them."""
    stored = await deps.db(deps.store.delta_links)
    if stored is None or any(r not in stored.links for r in RESOURCES):
        return None
    interval = timedelta(hours=deps.policy.daemon.full_scan_interval_hours)
    if now - stored.full_scan_at >= interval:
        return None
    return stored


async def _track_changes(deps: EngineDeps) -> dict[str, str] | None:
    """Delta links from now, asked before the full listing starts: a change made while
    it runs is read again by the next incremental scan rather than lost."""
    try:
        return {resource: await deps.directory.track_changes(resource)
                for resource in RESOURCES}
    except DirectoryError as exc:
        log.warning("Graph gave no delta link; the next scan reads every app again",
                    error=str(exc))
        return None


async def _full(deps: EngineDeps, report: ScanReport,
                on_app: Callable[[int, int], None] | None, now: datetime,
                on_rows: Callable[[Sequence[InventoryRow]], None] | None = None) -> None:
    scan_id = report.scan_id
    batch: list[InventoryRow] = []
    managed = deps.policy.apps
    # app id -> object id of every app recorded. Graph's paging can show an app twice
    # when the tenant changes under it: the first sighting is recorded and counted.
    recorded: dict[int | str, int | str] = {}
    # One inventory write runs in a thread while the next pages are fetched and parsed;
    # at most one at a time, so memory stays flat however large the tenant is.
    writing: asyncio.Task[int] | None = None

    async def settle() -> None:
        nonlocal writing
        # Cleared before the await, so a failed write is reported once, not raised again.
        pending, writing = writing, None
        if pending is not None:
            await pending

    async def flush(rows: list[InventoryRow]) -> None:
        nonlocal writing
        if on_rows is not None:
            on_rows(rows)
        await settle()
        writing = asyncio.create_task(deps.db(deps.store.record_inventory, scan_id, rows, now))

    try:
        federated = await _federated(deps, report)
        async for item in deps.directory.list_applications():
            if item.app is None:
                report.errors.append((item.raw_id, item.error or "unreadable application"))
                continue
            app = item.app
            app_key, object_key = _compact(app.app_id), _compact(app.object_id)
            first = recorded.get(app_key)
            if first is not None:
                if first != object_key:
                    # One client id on two objects: they cannot both be right.
                    report.errors.append((app.object_id, (
                        f"application (client) id {app.app_id} is also the id of application "
                        f"object {_expand(first)}; this one was not recorded")))
                continue
            recorded[app_key] = object_key
            report.apps_seen += 1
            for cred in app.credentials:
                report.credentials_seen += 1
                batch.append(InventoryRow.from_credential(
                    app, cred, managed=app.app_id in managed, scan_run_id=scan_id, seen_at=now,
                    federated=None if federated is None else app.app_id.lower() in federated))
            if len(batch) >= BATCH:
                await flush(batch)
                batch = []
            if on_app is not None:
                on_app(report.apps_seen, report.credentials_seen)
        batch = await _service_principals(deps, report, recorded, batch, flush, now)
        if batch:
            await flush(batch)
        await settle()
    except asyncio.CancelledError:
        raise
    except Exception:
        # A write still in flight has nothing to add to the first error.
        with contextlib.suppress(Exception):
            await settle()
        raise


async def _incremental(deps: EngineDeps, report: ScanReport, stored: DeltaLinks,
                       now: datetime) -> dict[str, str]:
    """Read what changed since the stored links and apply it in one transaction; the
    new links are returned for the scan to store once it is closed as succeeded."""
    latest: dict[str, dict[str, ScanItem]] = {}
    links: dict[str, str] = {}
    for resource in RESOURCES:
        into = DeltaRound()
        # An object changed twice while the round was paged comes twice: the last wins.
        seen: dict[str, ScanItem] = {}
        async for item in deps.directory.list_changes(resource, stored.links[resource], into):
            key = (item.app.object_id if item.app is not None else item.raw_id) or ""
            seen.pop(key, None)
            seen[key] = item
        if into.delta_link is None:
            raise DirectoryError(f"the delta query of {resource} ended without a deltaLink")
        latest[resource], links[resource] = seen, into.delta_link
    changed = [i.app for items in latest.values() for i in items.values() if i.app is not None]
    # What the inventory knows of the changed apps: owners (kept when the directory could
    # not tell them) and which app ids are registered here (for service principals of
    # other tenants).
    known = (await deps.db(deps.store.inventory, app_ids={a.app_id for a in changed})
             if changed else [])
    owners = {(r.app_id.lower(), r.source): r.owners for r in known if r.owners is not None}
    registered = {r.app_id.lower() for r in known if r.source is CredentialSource.APPLICATION}
    registered |= {i.app.app_id.lower() for i in latest["applications"].values()
                   if i.app is not None}
    rows: list[InventoryRow] = []
    replaced: list[tuple[str, CredentialSource]] = []
    managed = deps.policy.apps
    # Asked for the changed apps' rows only: an app whose federated credentials changed
    # and nothing else keeps its flag until the next full listing.
    federated = await _federated(deps, report) if changed else set()
    for resource, items in latest.items():
        source = (CredentialSource.APPLICATION if resource == "applications"
                  else CredentialSource.SERVICE_PRINCIPAL)
        for key, item in items.items():
            if item.removed:
                replaced.append((key, source))
                report.apps_changed += 1
                continue
            app = item.app
            if app is None:
                report.errors.append((item.raw_id, item.error or f"unreadable {resource}"))
                continue
            report.apps_changed += 1
            replaced.append((app.object_id, source))
            if app.owners is None:
                app = replace(app, owners=owners.get((app.app_id.lower(), source)))
            if source is CredentialSource.APPLICATION:
                report.apps_seen += 1
                foreign = False
            else:
                report.service_principals_seen += 1
                foreign = (app.home_tenant_id.lower() != deps.tenant_id.lower()
                           if app.home_tenant_id is not None
                           else app.app_id.lower() not in registered)
            for cred in app.credentials:
                report.credentials_seen += 1
                rows.append(InventoryRow.from_credential(
                    app, cred, managed=source is CredentialSource.APPLICATION
                    and app.app_id in managed, foreign_app=foreign,
                    federated=None if federated is None else app.app_id.lower() in federated,
                    scan_run_id=report.scan_id, seen_at=now))
    await deps.db(deps.store.apply_changes, report.scan_id, rows, replaced, now,
                            tuple(managed))
    return links


async def _federated(deps: EngineDeps, report: ScanReport) -> set[str] | None:
    """Client ids of the apps that hold a federated identity credential; ``None`` (not
    known, and the scan partial) when Graph would not say."""
    try:
        return await deps.directory.federated_app_ids()
    except DirectoryError as exc:
        report.errors.append((None, f"could not list apps with federated credentials: {exc}"))
        return None


async def _service_principals(
    deps: EngineDeps, report: ScanReport, registered: dict[int | str, int | str],
    batch: list[InventoryRow], flush: Callable[[list[InventoryRow]], Awaitable[None]],
    now: datetime,
) -> list[InventoryRow]:
    """The service principals' own credentials, after the app registrations.

    A listing that fails part-way leaves the scan partial: what was read is recorded,
    and the credentials of service principals not read keep their last known rows.
    """
    seen: set[str] = set()
    try:
        async for item in deps.directory.list_service_principals():
            if item.app is None:
                report.errors.append((item.raw_id, item.error or "unreadable service principal"))
                continue
            sp = item.app
            if sp.object_id in seen:
                continue  # paging showed it twice
            seen.add(sp.object_id)
            report.service_principals_seen += 1
            if sp.home_tenant_id is not None:
                foreign = sp.home_tenant_id.lower() != deps.tenant_id.lower()
            else:
                foreign = _compact(sp.app_id) not in registered
            for cred in sp.credentials:
                report.credentials_seen += 1
                batch.append(InventoryRow.from_credential(
                    sp, cred, managed=False, foreign_app=foreign, scan_run_id=report.scan_id,
                    seen_at=now))
            if len(batch) >= BATCH:
                await flush(batch)
                batch = []
    except DirectoryError as exc:
        report.errors.append((None, f"service principals: {exc}"))
    return batch


async def _finish(deps: EngineDeps, report: ScanReport, links: dict[str, str] | None
                  ) -> None:
    await deps.db(deps.store.finish_scan,
        report.scan_id, deps.now(), status=report.status, apps_seen=report.apps_seen,
        credentials_seen=report.credentials_seen, errors=report.errors, error=report.error,
        mode=report.mode, graph_requests=report.graph_requests,
        apps_changed=report.apps_changed if report.mode == "delta" else None,
        delta_links=links if report.status is ScanStatus.SUCCEEDED else None,
    )
    await deps.db(deps.store.append_audit,
        deps.now(), "scan",
        AuditOutcome.OK if report.status is ScanStatus.SUCCEEDED
        else AuditOutcome.INFO if report.status is ScanStatus.INTERRUPTED  # a stop, no fault
        else AuditOutcome.ERROR,
        f"scan {report.status}: {report.apps_seen} apps, "
        f"{report.service_principals_seen} "
        f"service principals, {report.credentials_seen} credentials, "
        f"{len(report.errors)} unreadable"
        + (f" (incremental: {report.apps_changed} changed)" if report.mode == "delta" else "")
        + (f"; {report.error}" if report.error else ""),
        details={"scan_id": report.scan_id, "mode": report.mode},
    )
    log.info("scan finished", scan_id=report.scan_id, status=report.status, mode=report.mode,
             graph_requests=report.graph_requests,
             apps=report.apps_seen, credentials=report.credentials_seen,
             unreadable=len(report.errors))
