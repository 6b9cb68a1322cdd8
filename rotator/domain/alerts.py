"""Alert values: what is worth telling a person, and whether it was told (never a secret)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

Detail = str | int | float | bool | None


class AlertKind(StrEnum):
    EXPIRY = "expiry"
    ROTATION = "rotation"
    SCAN = "scan"
    FINDING = "finding"


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


SEVERITY_ORDER: Mapping[Severity, int] = {
    Severity.CRITICAL: 0,
    Severity.WARNING: 1,
    Severity.INFO: 2,
}


# Alerts that go out at once even in daily digest mode, by (prefix, suffix) of their key:
# a credential that has expired, a rotation that failed, and a retirement held past its
# maximum wait. Each means something is broken or about to break now; a day's wait for
# the digest is a day of outage.
URGENT_KEYS: tuple[tuple[str, str], ...] = (
    ("expiry:", ":expired"),
    ("rotation-failed:", ""),
    ("retirement-held:", ""),
)


def is_urgent(key: str) -> bool:
    """Whether the alert with this key bypasses the daily digest."""
    return any(key.startswith(prefix) and key.endswith(suffix) for prefix, suffix in URGENT_KEYS)


@dataclass(frozen=True, slots=True)
class Alert:
    """One thing to tell; ``key`` is what makes it go out once per channel."""

    key: str
    kind: AlertKind
    severity: Severity
    subject: str
    app_id: str | None = None
    details: Mapping[str, Detail] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Message:
    """What one notifier sends: one alert, a digest of many, or a test."""

    title: str
    alerts: tuple[Alert, ...]
    generated_at: datetime
    digest: bool = False
    test: bool = False
    # Said before the alerts, e.g. that the last scan was partial.
    notes: tuple[str, ...] = ()
    # Alerts left out of a long digest (they are still recorded as sent).
    omitted: int = 0


class DeliveryStatus(StrEnum):
    PENDING = "pending"  # to be sent (again, once its backoff ends)
    SENT = "sent"
    FAILED = "failed"  # given up after the channel's max_send_attempts


@dataclass(frozen=True, slots=True)
class Delivery:
    """One alert's (or one digest's) delivery to one channel."""

    id: int
    channel: str
    alert: Alert
    status: DeliveryStatus
    attempts: int
    created_at: datetime
    sent_at: datetime | None = None
    last_error: str | None = None
    next_attempt_at: datetime | None = None
