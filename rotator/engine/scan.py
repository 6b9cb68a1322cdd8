"""scan: read every app registration, record the credential inventory and the run.

A scan that fails part-way is recorded as failed (or partial when only some apps
could not be read) — never as a clean run that found nothing expiring.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from rotator.engine.context import EngineDeps, log
from rotator.ports import DirectoryError

if TYPE_CHECKING:
    from rotator.adapters.db.views import InventoryRow

BATCH = 2000


@dataclass
class ScanReport:
    scan_id: str
    status: str
    apps_seen: int = 0
    credentials_seen: int = 0
    errors: list[tuple[str | None, str]] = field(default_factory=list)
    error: str | None = None


async def scan(deps: EngineDeps, *, on_app: Callable[[int], None] | None = None) -> ScanReport:
    from rotator.adapters.db.views import InventoryRow

    now = deps.now()
    scan_id = deps.store.start_scan(now)
    report = ScanReport(scan_id=scan_id, status="running")
    batch: list[InventoryRow] = []
    managed = deps.policy.apps
    # One inventory write runs in a thread while the next pages are fetched and parsed;
    # at most one at a time, so memory stays flat however large the tenant is.
    writing: asyncio.Task[int] | None = None

    async def flush(rows: list[InventoryRow]) -> None:
        nonlocal writing
        if writing is not None:
            await writing
        writing = asyncio.create_task(
            asyncio.to_thread(deps.store.record_inventory, scan_id, rows, now))

    try:
        async for item in deps.directory.list_applications():
            if item.app is None:
                report.errors.append((item.raw_id, item.error or "unreadable application"))
                continue
            app = item.app
            report.apps_seen += 1
            for cred in app.credentials:
                report.credentials_seen += 1
                batch.append(
                    InventoryRow(
                        app_id=app.app_id,
                        object_id=app.object_id,
                        app_display_name=app.display_name,
                        key_id=cred.key_id,
                        kind=cred.kind,
                        display_name=cred.display_name,
                        start_at=cred.start,
                        end_at=cred.end,
                        hint=cred.hint,
                        thumbprint=cred.thumbprint,
                        managed=app.app_id in managed,
                        scan_run_id=scan_id,
                        seen_at=now,
                    )
                )
            if len(batch) >= BATCH:
                await flush(batch)
                batch = []
            if on_app is not None:
                on_app(report.apps_seen)
        if batch:
            await flush(batch)
    except DirectoryError as exc:
        report.status = "failed"
        report.error = str(exc)
    finally:
        if writing is not None:
            await writing
    report.status = report.status if report.status == "failed" else (
        "partial" if report.errors else "succeeded"
    )
    deps.store.finish_scan(
        scan_id, deps.now(), status=report.status, apps_seen=report.apps_seen,
        credentials_seen=report.credentials_seen, errors=report.errors, error=report.error,
    )
    deps.store.append_audit(
        deps.now(), "scan", "ok" if report.status == "succeeded" else "error",
        f"scan {report.status}: {report.apps_seen} apps, {report.credentials_seen} credentials, "
        f"{len(report.errors)} unreadable" + (f"; {report.error}" if report.error else ""),
        details={"scan_id": scan_id},
    )
    log.info("scan finished", scan_id=scan_id, status=report.status, apps=report.apps_seen,
             credentials=report.credentials_seen, unreadable=len(report.errors))
    return report
