"""JSON shapes of the API's answers: metadata only, never a secret value."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from rotator.alerts.findings import Finding
from rotator.domain.records import AuditEvent, InventoryRow
from rotator.domain.rotation import Rotation


def iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z") if value else None


def credential_json(row: InventoryRow, now: datetime) -> dict[str, Any]:
    days = row.days_left(now)
    return {
        "app_id": row.app_id,
        "app_name": row.app_display_name,
        "key_id": row.key_id,
        "kind": str(row.kind),
        "display_name": row.display_name,
        "hint": row.hint,  # the first three characters Graph shows for every secret
        "thumbprint": row.thumbprint,
        "start_date_time": iso(row.start_at),
        "end_date_time": iso(row.end_at),
        "days_left": None if days is None else round(days, 2),
        "managed": row.managed,
        "source": str(row.source),
        "owners": None if row.owners is None else list(row.owners),
        "seen_at": iso(row.seen_at),
    }


def rotation_json(r: Rotation) -> dict[str, Any]:
    return {
        "id": r.id,
        "app_id": r.app_id,
        "kind": str(r.kind),
        "state": str(r.state),
        "reason": str(r.reason),
        "active": r.active,
        "old_key_id": r.old_key_id,
        "new_key_id": r.new_key_id,
        "new_key_end_date_time": iso(r.new_key_end_at),
        "secret_name": r.secret_name,
        "vault_url": r.vault_url,
        "secret_version": r.consumer_version,
        "created_at": iso(r.created_at),
        "updated_at": iso(r.updated_at),
        "finished_at": iso(r.finished_at),
        "next_attempt_at": iso(r.next_attempt_at),
        "retire_after": iso(r.retire_after),
        "attempts": r.attempts,
        "error": r.last_error,
        "held": r.held,
        "held_since": iso(r.held_since),
        "held_overdue": r.held_overdue,
    }


def audit_json(e: AuditEvent) -> dict[str, Any]:
    return {"id": e.id, "at": iso(e.at), "step": e.step, "outcome": str(e.outcome),
            "message": e.message, "details": dict(e.details)}


def finding_json(f: Finding) -> dict[str, Any]:
    return {"kind": str(f.kind), "severity": str(f.severity), "app_id": f.app_id,
            "app_name": f.app_name, "key_id": f.key_id, "message": f.message}
