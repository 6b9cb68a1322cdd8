"""SQLAlchemy models: the schema that the migrations in ``migrations/versions`` create.

Keep the two in step: a test runs ``upgrade head`` and compares the result with
this metadata. Status-like columns are plain strings with CHECK constraints
rather than native enums, so adding a state is a constraint change, not an
``ALTER TYPE`` that PostgreSQL cannot run inside a transaction.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from rotator.domain.credentials import CredentialKind
from rotator.domain.states import ACTIVE_STATES, RotationState

# Explicit names keep constraints identical on SQLite and PostgreSQL, so later
# migrations can drop or alter them by name on both.
NAMING_CONVENTION: Final[dict[str, str]] = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

SCAN_STATUSES: Final = ("running", "succeeded", "partial", "failed", "interrupted")
AUDIT_OUTCOMES: Final = ("ok", "error", "info")
CREDENTIAL_KINDS: Final = tuple(k.value for k in CredentialKind)
ROTATION_STATES: Final = tuple(s.value for s in RotationState)
# Sorted so the rendered index predicate is stable and matches the migration text.
ACTIVE_STATE_VALUES: Final = tuple(sorted(s.value for s in ACTIVE_STATES))
ROTATION_REASONS: Final = ("due", "manual")

# Capped so one pathological scan cannot bloat a row; the count stays exact.
MAX_SCAN_ERRORS: Final = 100


def _in_list(column: str, values: tuple[str, ...]) -> str:
    quoted = ", ".join(f"'{v}'" for v in values)
    return f"{column} IN ({quoted})"


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC in, timezone-aware UTC out, on every backend.

    SQLite has no timestamp type and silently drops ``tzinfo``; the stored text
    is naive UTC and gets its zone back on the way out. Naive datetimes are
    refused on the way in: guessing their zone is how expiry times drift by hours.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value!r}: pass a timezone-aware UTC datetime")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {
        datetime: UTCDateTime(),
        dict[str, Any]: sa.JSON(),
        list[dict[str, Any]]: sa.JSON(),
    }


class ScanRunModel(Base):
    __tablename__ = "scan_runs"
    __table_args__ = (
        sa.CheckConstraint(_in_list("status", SCAN_STATUSES), name="status"),
        sa.Index(None, "started_at"),
    )

    id: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
    status: Mapped[str] = mapped_column(sa.String(16))
    apps_seen: Mapped[int] = mapped_column(default=0)
    credentials_seen: Mapped[int] = mapped_column(default=0)
    error_count: Mapped[int] = mapped_column(default=0)
    error: Mapped[str | None] = mapped_column(sa.Text)
    errors: Mapped[list[dict[str, Any]]] = mapped_column(default=list)
    # full: every app listed; delta: only what changed since the stored delta link.
    mode: Mapped[str] = mapped_column(sa.String(8), server_default="full", default="full")
    graph_requests: Mapped[int | None]
    apps_changed: Mapped[int | None]


class DeltaLinkModel(Base):
    """Where the next incremental scan goes on from, per listing (applications, service
    principals). Written only with the scan that read every change before it."""

    __tablename__ = "delta_links"

    resource: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    link: Mapped[str] = mapped_column(sa.Text)
    # When the last full listing started: a full one is due again after the interval.
    full_scan_at: Mapped[datetime]
    scan_run_id: Mapped[str] = mapped_column(sa.String(32))


class CredentialModel(Base):
    """Inventory as of the last scan that saw each app. Never a secret value."""

    __tablename__ = "credentials"
    __table_args__ = (
        sa.CheckConstraint(_in_list("kind", CREDENTIAL_KINDS), name="kind"),
        sa.Index(None, "end_at"),
        sa.Index(None, "scan_run_id"),
    )

    app_id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    key_id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    object_id: Mapped[str] = mapped_column(sa.String(64))
    app_display_name: Mapped[str] = mapped_column(sa.Text)
    kind: Mapped[str] = mapped_column(sa.String(16))
    display_name: Mapped[str | None] = mapped_column(sa.Text)
    start_at: Mapped[datetime | None]
    end_at: Mapped[datetime | None]
    hint: Mapped[str | None] = mapped_column(sa.String(64))
    thumbprint: Mapped[str | None] = mapped_column(sa.String(128))
    managed: Mapped[bool] = mapped_column(default=False)
    scan_run_id: Mapped[str] = mapped_column(sa.String(32), sa.ForeignKey("scan_runs.id"))
    seen_at: Mapped[datetime]
    # The wider estate (added later, hence after seen_at): where the credential lives,
    # what it is for, and who owns what holds it.
    source: Mapped[str] = mapped_column(sa.String(16), server_default="application")
    sp_object_id: Mapped[str | None] = mapped_column(sa.String(64))
    usage: Mapped[str | None] = mapped_column(sa.String(16))
    signing_active: Mapped[bool | None]
    # A JSON list of mail addresses or user principal names; NULL when not known.
    owners: Mapped[str | None] = mapped_column(sa.Text)
    foreign_app: Mapped[bool] = mapped_column(server_default=sa.false())
    # The app holds a federated identity credential; NULL when not known.
    federated: Mapped[bool | None]


class RotationModel(Base):
    """Mirrors :class:`rotator.domain.rotation.Rotation` field for field."""

    __tablename__ = "rotations"
    __table_args__ = (
        sa.CheckConstraint(_in_list("state", ROTATION_STATES), name="state"),
        sa.CheckConstraint(_in_list("kind", CREDENTIAL_KINDS), name="kind"),
        sa.CheckConstraint(_in_list("reason", ROTATION_REASONS), name="reason"),
        # Invariant 4: at most one active rotation per app, across all replicas.
        sa.Index(
            "uq_rotations_active_app_id",
            "app_id",
            unique=True,
            sqlite_where=sa.text(_in_list("state", ACTIVE_STATE_VALUES)),
            postgresql_where=sa.text(_in_list("state", ACTIVE_STATE_VALUES)),
        ),
        sa.Index(None, "state", "next_attempt_at"),
        sa.Index(None, "app_id", "created_at"),
    )

    id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    app_id: Mapped[str] = mapped_column(sa.String(64))
    object_id: Mapped[str] = mapped_column(sa.String(64))
    kind: Mapped[str] = mapped_column(sa.String(16))
    state: Mapped[str] = mapped_column(sa.String(16))
    reason: Mapped[str] = mapped_column(sa.String(16))
    secret_name: Mapped[str] = mapped_column(sa.String(127))
    vault_url: Mapped[str] = mapped_column(sa.Text)
    old_key_id: Mapped[str | None] = mapped_column(sa.String(64))
    new_key_id: Mapped[str | None] = mapped_column(sa.String(64))
    new_key_end_at: Mapped[datetime | None]
    staging_version: Mapped[str | None] = mapped_column(sa.String(64))
    consumer_version: Mapped[str | None] = mapped_column(sa.String(64))
    attempts: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str | None] = mapped_column(sa.Text)
    next_attempt_at: Mapped[datetime | None]
    retire_after: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    lease_owner: Mapped[str | None] = mapped_column(sa.String(255))
    lease_expires_at: Mapped[datetime | None]
    extra: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class AuditEventModel(Base):
    """Append-only log of every step. Never a secret value."""

    __tablename__ = "audit_events"
    __table_args__ = (
        sa.CheckConstraint(_in_list("outcome", AUDIT_OUTCOMES), name="outcome"),
        sa.Index(None, "rotation_id"),
        sa.Index(None, "app_id"),
    )

    # BigInteger on PostgreSQL, INTEGER on SQLite (only INTEGER PRIMARY KEY autoincrements there).
    id: Mapped[int] = mapped_column(
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True
    )
    at: Mapped[datetime]
    rotation_id: Mapped[str | None] = mapped_column(sa.String(64))
    app_id: Mapped[str | None] = mapped_column(sa.String(64))
    step: Mapped[str] = mapped_column(sa.String(128))
    outcome: Mapped[str] = mapped_column(sa.String(8))
    message: Mapped[str] = mapped_column(sa.Text)
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)


metadata: Final = Base.metadata


# ----------------------------------------------------------------- alerts (20261126_0002)

ALERT_KINDS: Final = ("expiry", "rotation", "scan", "finding", "digest")
ALERT_STATUSES: Final = ("pending", "sent", "failed")
ALERT_SEVERITIES: Final = ("info", "warning", "critical")


class AlertDeliveryModel(Base):
    """One alert for one channel: what was (or is to be) sent. Never a secret value.

    The unique (channel, alert_key) pair is what makes an alert go out once: a
    pass inserts the rows it would send, and only a newly inserted row is ever
    claimed and sent, by exactly one replica (a conditional UPDATE on the claim).
    A digest is a row of kind ``digest`` keyed by its period, so at most one
    digest per channel and period exists.
    """

    __tablename__ = "alert_deliveries"
    __table_args__ = (
        sa.UniqueConstraint("channel", "alert_key"),
        sa.CheckConstraint(_in_list("kind", ALERT_KINDS), name="kind"),
        sa.CheckConstraint(_in_list("status", ALERT_STATUSES), name="status"),
        sa.CheckConstraint(_in_list("severity", ALERT_SEVERITIES), name="severity"),
        sa.Index(None, "channel", "status", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True
    )
    channel: Mapped[str] = mapped_column(sa.String(64))
    alert_key: Mapped[str] = mapped_column(sa.String(255))
    kind: Mapped[str] = mapped_column(sa.String(16))
    severity: Mapped[str] = mapped_column(sa.String(16))
    app_id: Mapped[str | None] = mapped_column(sa.String(64))
    subject: Mapped[str] = mapped_column(sa.Text)
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(sa.String(16))
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime | None]
    claimed_by: Mapped[str | None] = mapped_column(sa.String(255))
    claim_expires_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(sa.Text)
    created_at: Mapped[datetime]
    sent_at: Mapped[datetime | None]


# ----------------------------------------------------------------- consumer hooks (20261128_0003)

HOOK_DELIVERY_STATUSES: Final = ("pending", "delivered")


class HookDeliveryModel(Base):
    """One event of one rotation for one hook of its app. Never a secret value.

    The event (its id, type, time and data) is stored whole, so a retry after a
    restart sends the very same event; (rotation, hook, event type) is unique, so
    an event is recorded once however many replicas or restarts see it.
    """

    __tablename__ = "hook_deliveries"
    __table_args__ = (
        sa.UniqueConstraint("rotation_id", "hook", "event_type"),
        sa.CheckConstraint(_in_list("status", HOOK_DELIVERY_STATUSES), name="status"),
        sa.Index(None, "status", "next_attempt_at"),
        sa.Index(None, "event_id"),
    )

    id: Mapped[int] = mapped_column(
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True
    )
    rotation_id: Mapped[str] = mapped_column(sa.String(64))
    app_id: Mapped[str] = mapped_column(sa.String(64))
    hook: Mapped[str] = mapped_column(sa.String(64))
    event_type: Mapped[str] = mapped_column(sa.String(64))
    event_id: Mapped[str] = mapped_column(sa.String(64))
    event_time: Mapped[datetime]
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(sa.String(16))
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(sa.Text)
    created_at: Mapped[datetime]
    delivered_at: Mapped[datetime | None]


# ----------------------------------------------------------------- replicas (20261128_0006)


class ScanTurnModel(Base):
    """Which replica scans now, and when the last turn began (one row, named ``scan``).

    A turn is a lease: the holder renews ``expires_at`` while it scans and clears
    ``owner`` when done; a turn whose holder stopped renewing is taken over.
    """

    __tablename__ = "scan_turns"

    name: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    owner: Mapped[str | None] = mapped_column(sa.String(255))
    expires_at: Mapped[datetime | None]
    started_at: Mapped[datetime | None]
    # The scan the holder runs, so a replica taking over can close it as interrupted.
    scan_id: Mapped[str | None] = mapped_column(sa.String(32))


class WriteBudgetModel(Base):
    """A rate budget every replica draws from (one row per budget, ``graph`` today).

    Kept as GCRA's theoretical arrival time: ``next_slot_at`` is when the next
    write would be due if writes went out exactly at the rate. Reserving a write
    moves it one spacing later; how far it lies ahead of the database's clock says
    how long the caller waits.
    """

    __tablename__ = "write_budgets"

    name: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    next_slot_at: Mapped[datetime]
