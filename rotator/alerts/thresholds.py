"""Which expiry threshold a credential has crossed, and the alert that says so. Pure."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

from rotator.domain.alerts import Alert, AlertKind, Severity
from rotator.domain.records import InventoryRow

EXPIRED = "expired"
CRITICAL_DAYS = 7.0


def threshold_label(threshold: float | None) -> str:
    """``None`` is the "expired" threshold."""
    return EXPIRED if threshold is None else f"{threshold:g}d"


def crossed_threshold(days_left: float | None, thresholds: Sequence[float]) -> str | None:
    """The tightest threshold crossed: "expired", "7d", ...; ``None`` when none is.

    A credential first seen with 5 days left has crossed 30, 14 and 7 at once;
    only the tightest (7) is worth a message — the looser ones are old news.
    A credential with no end date never crosses anything.
    """
    if days_left is None:
        return None
    if days_left <= 0:
        return EXPIRED
    crossed = [t for t in thresholds if days_left <= t]
    if not crossed:
        return None
    return threshold_label(min(crossed))


def _when(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def expiry_alert(row: InventoryRow, label: str, now: datetime) -> Alert:
    days = row.days_left(now)
    assert days is not None and row.end_at is not None
    kind = "certificate" if str(row.kind) == "certificate" else "client secret"
    if row.saml_signing:
        kind = "SAML token-signing certificate"
    where = "service principal " if row.on_service_principal else ""
    who = f"{where}{row.app_display_name!r} (app {row.app_id})"
    what = f"{kind[:1].upper()}{kind[1:]} {row.key_id} of {who}"
    if label == EXPIRED:
        subject = f"{what} expired on {_when(row.end_at)}"
    else:
        subject = (
            f"{what} expires in {days:.1f} days "
            f"({_when(row.end_at)}), inside the {label[:-1]}-day threshold"
        )
    if row.managed:
        subject += "; rotator manages this app and rotates it"
    elif row.on_service_principal:
        subject += "; it lives on a service principal, which rotator reports but never rotates"
    else:
        subject += "; not managed by rotator: rotate it by hand or add the app to the policy"
    severity = (
        Severity.CRITICAL if label == EXPIRED or days <= CRITICAL_DAYS else Severity.WARNING
    )
    return Alert(
        key=f"expiry:{row.app_id}:{row.key_id}:{label}",
        kind=AlertKind.EXPIRY,
        severity=severity,
        subject=subject,
        app_id=row.app_id,
        details={
            "app_name": row.app_display_name,
            "key_id": row.key_id,
            "credential_kind": str(row.kind),
            "end": row.end_at.astimezone(UTC).isoformat(),
            "days_left": round(days, 1),
            "threshold": label,
            "managed": row.managed,
            "source": str(row.source),
            "usage": row.usage,
            # Who owns what holds it; owner routing sends the alert to them.
            "owners": None if row.owners is None else ",".join(row.owners),
        },
    )


def expiry_alerts(
    rows: Iterable[InventoryRow], thresholds: Sequence[float], now: datetime
) -> list[Alert]:
    """One alert per credential that has crossed a threshold, soonest expiry first."""
    out: list[Alert] = []
    for row in rows:
        if not row.expiry_matters:
            continue
        label = crossed_threshold(row.days_left(now), thresholds)
        if label is not None:
            out.append(expiry_alert(row, label, now))
    out.sort(key=lambda a: (float(a.details["days_left"] or 0), a.key))
    return out
