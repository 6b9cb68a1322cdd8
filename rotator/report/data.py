"""What the report shows, as plain data. Pure: the caller reads the database."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from rotator.alerts.compose import scan_notes
from rotator.alerts.findings import Finding
from rotator.domain.alerts import SEVERITY_ORDER
from rotator.domain.records import InventoryRow, ScanRun
from rotator.domain.rotation import Rotation

HORIZON_DAYS = 180
WEEKS = -(-HORIZON_DAYS // 7)  # 26 weeks cover the next 180 days
SOON_DAYS = 30
RECENT_ROTATIONS = 20


@dataclass(frozen=True, slots=True)
class WeekBucket:
    start: date
    managed: int
    unmanaged: int

    @property
    def total(self) -> int:
        return self.managed + self.unmanaged


@dataclass(frozen=True, slots=True)
class CredentialLine:
    app_id: str
    app_name: str
    key_id: str
    kind: str
    end: datetime | None
    days_left: float | None
    managed: bool
    findings: tuple[str, ...]
    # "application", "servicePrincipal", or "servicePrincipal (SAML signing)".
    source: str = "application"
    owners: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class ReportData:
    generated_at: datetime
    last_scan: ScanRun | None
    notes: tuple[str, ...]
    total: int
    managed: int
    expired: int
    expiring_soon: int
    no_end: int
    weeks: tuple[WeekBucket, ...]
    credentials: tuple[CredentialLine, ...]
    findings: tuple[Finding, ...]
    rotations: tuple[Rotation, ...]

    @property
    def soon(self) -> tuple[CredentialLine, ...]:
        """Expired or ending within SOON_DAYS, soonest first."""
        return tuple(c for c in self.credentials
                     if c.days_left is not None and c.days_left <= SOON_DAYS)


def week_buckets(rows: Sequence[InventoryRow], now: datetime) -> tuple[WeekBucket, ...]:
    """Credentials ending in each of the next WEEKS weeks (week 0 starts now), managed or not."""
    managed = [0] * WEEKS
    unmanaged = [0] * WEEKS
    horizon = now + timedelta(days=HORIZON_DAYS)
    for row in rows:
        if row.end_at is None or row.end_at <= now or row.end_at > horizon:
            continue
        week = min(int((row.end_at - now).total_seconds() // (7 * 86400)), WEEKS - 1)
        (managed if row.managed else unmanaged)[week] += 1
    start = now.astimezone(UTC).date()
    return tuple(
        WeekBucket(start + timedelta(days=7 * i), managed[i], unmanaged[i]) for i in range(WEEKS)
    )


def build_report(
    inventory: Sequence[InventoryRow],
    findings: Sequence[Finding],
    rotations: Sequence[Rotation],
    last_scan: ScanRun | None,
    now: datetime,
) -> ReportData:
    by_key: dict[tuple[str, str | None], list[str]] = {}
    for f in findings:
        by_key.setdefault((f.app_id, f.key_id), []).append(str(f.kind))
    lines = []
    for row in inventory:
        days = row.days_left(now)
        tags = by_key.get((row.app_id, row.key_id), []) + by_key.get((row.app_id, None), [])
        lines.append(CredentialLine(
            app_id=row.app_id, app_name=row.app_display_name, key_id=row.key_id,
            kind=str(row.kind), end=row.end_at, days_left=None if days is None else days,
            managed=row.managed, findings=tuple(sorted(set(tags))),
            source=str(row.source) + (" (SAML signing)" if row.saml_signing else ""),
            owners=row.owners,
        ))
    lines.sort(key=lambda c: (c.days_left is None, c.days_left or 0.0, c.app_id, c.key_id))
    return ReportData(
        generated_at=now,
        last_scan=last_scan,
        notes=scan_notes(last_scan),
        total=len(lines),
        managed=sum(1 for c in lines if c.managed),
        expired=sum(1 for c in lines if c.days_left is not None and c.days_left <= 0),
        expiring_soon=sum(
            1 for c in lines if c.days_left is not None and 0 < c.days_left <= SOON_DAYS
        ),
        no_end=sum(1 for c in lines if c.end is None),
        weeks=week_buckets(inventory, now),
        credentials=tuple(lines),
        findings=tuple(sorted(findings, key=lambda f: (SEVERITY_ORDER[f.severity], f.kind,
                                                      f.app_name, f.key or ''))),
        rotations=tuple(rotations[:RECENT_ROTATIONS]),
    )


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z") if value else None


def credential_json(c: CredentialLine) -> dict[str, Any]:
    return {
        "app_id": c.app_id,
        "app_name": c.app_name,
        "key_id": c.key_id,
        "kind": c.kind,
        "end_date_time": _iso(c.end),
        "days_left": None if c.days_left is None else round(c.days_left, 1),
        "managed": c.managed,
        "findings": list(c.findings),
        "source": c.source,
        "owners": None if c.owners is None else list(c.owners),
    }


def report_json(data: ReportData) -> dict[str, Any]:
    scan = data.last_scan
    return {
        "generated_at": _iso(data.generated_at),
        "last_scan": None if scan is None else {
            "id": scan.id, "status": str(scan.status), "started_at": _iso(scan.started_at),
            "finished_at": _iso(scan.finished_at), "error_count": scan.error_count,
        },
        "notes": list(data.notes),
        "summary": {
            "credentials": data.total, "managed": data.managed,
            "unmanaged": data.total - data.managed, "expired": data.expired,
            f"expiring_within_{SOON_DAYS}_days": data.expiring_soon,
            "without_end_date": data.no_end, "findings": len(data.findings),
        },
        "expiry_by_week": [
            {"week_start": w.start.isoformat(), "managed": w.managed, "unmanaged": w.unmanaged}
            for w in data.weeks
        ],
        "findings": [
            {"kind": str(f.kind), "severity": str(f.severity), "app_id": f.app_id,
             "app_name": f.app_name, "key_id": f.key_id, "message": f.message}
            for f in data.findings
        ],
        "recent_rotations": [
            {"id": r.id, "app_id": r.app_id, "state": str(r.state), "reason": str(r.reason),
             "created_at": _iso(r.created_at), "updated_at": _iso(r.updated_at),
             "attempts": r.attempts, "last_error": r.last_error}
            for r in data.rotations
        ],
        "credentials": [credential_json(c) for c in data.credentials],
    }
