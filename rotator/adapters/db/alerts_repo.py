"""The alert state: which alert went (or is to go) to which channel.

Insert-then-send: a pass inserts a row per (channel, alert key) it would send;
the unique constraint makes a second insert a no-op, so an alert is recorded
once however many replicas or restarts see it. Sending starts with a claim (a
conditional UPDATE that only one replica can win per row), and ends with the
row marked sent, or back to pending with a backoff, or failed after too many
attempts. Never a secret value.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from rotator.adapters.db.models import (
    AlertDeliveryModel,
    AuditEventModel,
    RotationModel,
    ScanRunModel,
)
from rotator.adapters.db.repo import MAX_ERROR_CHARS, _jsonable, _rowcount, _scan_from_model
from rotator.adapters.db.session import make_sessionmaker
from rotator.domain.alerts import (
    URGENT_KEYS,
    Alert,
    AlertKind,
    Delivery,
    DeliveryStatus,
    Severity,
)
from rotator.domain.records import ScanRun

DIGEST: Final = "digest"
_CHUNK: Final = 500


def _alert_from(m: AlertDeliveryModel) -> Alert:
    kind = AlertKind(m.kind) if m.kind != DIGEST else AlertKind.SCAN
    return Alert(
        key=m.alert_key,
        kind=kind,
        severity=Severity(m.severity),
        subject=m.subject,
        app_id=m.app_id,
        details=dict(m.details or {}),
    )


def _delivery_from(m: AlertDeliveryModel) -> Delivery:
    return Delivery(
        id=m.id,
        channel=m.channel,
        alert=_alert_from(m),
        status=DeliveryStatus(m.status),
        attempts=m.attempts,
        created_at=m.created_at,
        sent_at=m.sent_at,
        last_error=m.last_error,
        next_attempt_at=m.next_attempt_at,
    )


class SqlAlertStore:
    """:class:`rotator.ports.AlertStore` on the same database (and engine) as the
    :class:`~rotator.adapters.db.repo.SqlStore`, which hands it out as ``store.alerts``."""

    def __init__(self, engine: sa.Engine) -> None:
        self._engine = engine
        self._make_session = make_sessionmaker(engine)

    # ------------------------------------------------------------- recording

    def record(self, channel: str, alerts: Iterable[Alert], now: datetime) -> int:
        """Insert the alerts not yet known for ``channel``; returns how many were new."""
        wanted: dict[str, Alert] = {}
        for alert in alerts:
            wanted.setdefault(alert.key, alert)
        if not wanted:
            return 0
        t = AlertDeliveryModel.__table__
        known: set[str] = set()
        keys = list(wanted)
        with self._engine.connect() as conn:
            for i in range(0, len(keys), _CHUNK):
                chunk = keys[i : i + _CHUNK]
                known.update(conn.execute(
                    sa.select(AlertDeliveryModel.alert_key).where(
                        AlertDeliveryModel.channel == channel,
                        AlertDeliveryModel.alert_key.in_(chunk),
                    )
                ).scalars())
        rows = [
            self._row(channel, a.key, a.kind.value, a.severity.value, a.app_id, a.subject,
                      dict(a.details), now)
            for key, a in wanted.items() if key not in known
        ]
        if not rows:
            return 0
        with self._engine.begin() as conn:
            conn.execute(self._insert_ignore(conn, t), rows)
        return len(rows)

    @staticmethod
    def _row(channel: str, key: str, kind: str, severity: str, app_id: str | None,
             subject: str, details: dict[str, Any], now: datetime) -> dict[str, Any]:
        return {
            "channel": channel,
            "alert_key": key[:255],
            "kind": kind,
            "severity": severity,
            "app_id": app_id.lower() if app_id else None,
            "subject": subject,
            "details": _jsonable(details, "alert details"),
            "status": DeliveryStatus.PENDING.value,
            "attempts": 0,
            "next_attempt_at": None,
            "claimed_by": None,
            "claim_expires_at": None,
            "last_error": None,
            "created_at": now,
            "sent_at": None,
        }

    @staticmethod
    def _insert_ignore(conn: sa.Connection, table: Any) -> Any:
        if conn.dialect.name == "postgresql":
            return postgresql.insert(table).on_conflict_do_nothing(
                index_elements=["channel", "alert_key"]
            )
        if conn.dialect.name == "sqlite":
            return sqlite.insert(table).on_conflict_do_nothing(
                index_elements=["channel", "alert_key"]
            )
        raise NotImplementedError(conn.dialect.name)

    # ------------------------------------------------------------- claiming

    @staticmethod
    def _claimable(now: datetime) -> sa.ColumnElement[bool]:
        m = AlertDeliveryModel
        return sa.and_(
            m.status == DeliveryStatus.PENDING.value,
            sa.or_(m.next_attempt_at.is_(None), m.next_attempt_at <= now),
            sa.or_(m.claimed_by.is_(None), m.claim_expires_at.is_(None),
                   m.claim_expires_at <= now),
        )

    def has_due(self, channel: str, now: datetime) -> bool:
        m = AlertDeliveryModel
        with self._engine.connect() as conn:
            found = conn.execute(
                sa.select(m.id)
                .where(m.channel == channel, m.kind != DIGEST, self._claimable(now))
                .limit(1)
            ).first()
        return found is not None

    def claim(
        self,
        channel: str,
        owner: str,
        now: datetime,
        *,
        lease: timedelta,
        limit: int,
        digest_key: str | None = None,
        urgent_only: bool = False,
    ) -> tuple[str, list[Delivery]]:
        """Claim up to ``limit`` due alerts of ``channel`` (or its digest row ``digest_key``).

        Returns the claim token and the claimed rows. On PostgreSQL a competing
        replica's UPDATE waits for the row lock, re-checks the condition and
        skips the row, so each row is claimed by one replica only.
        """
        m = AlertDeliveryModel
        token = f"{owner}/{uuid.uuid4().hex}"[-255:]
        which = m.alert_key == digest_key if digest_key is not None else m.kind != DIGEST
        if urgent_only:
            which = sa.and_(which, sa.or_(*(
                sa.and_(m.alert_key.startswith(prefix, autoescape=True),
                        m.alert_key.endswith(suffix, autoescape=True))
                for prefix, suffix in URGENT_KEYS
            )))
        # One statement, so SQLite takes its write lock up front (a read that turns into
        # a write can fail with "database is locked" instead of waiting its turn).
        due = (
            sa.select(m.id)
            .where(m.channel == channel, which, self._claimable(now))
            .order_by(m.id)
            .limit(limit)
            .scalar_subquery()
        )
        with self._sessions() as s, s.begin():
            s.execute(
                sa.update(m)
                .where(m.id.in_(due), self._claimable(now))
                .values(claimed_by=token, claim_expires_at=now + lease)
                .execution_options(synchronize_session=False)
            )
        with self._sessions() as s:
            claimed = s.scalars(
                sa.select(m)
                .where(m.claimed_by == token, m.status == DeliveryStatus.PENDING.value)
                .order_by(m.id)
            )
            return token, [_delivery_from(x) for x in claimed]

    def ensure_digest(self, channel: str, period: str, now: datetime) -> str:
        """The digest row of ``channel`` for ``period`` exists afterwards; returns its key."""
        key = f"{DIGEST}:{period}"
        row = self._row(channel, key, DIGEST, "info", None, f"digest {period}", {}, now)
        with self._engine.begin() as conn:
            conn.execute(self._insert_ignore(conn, AlertDeliveryModel.__table__), [row])
        return key

    def _sessions(self) -> Session:
        return self._make_session()

    # ------------------------------------------------------------- outcomes

    def mark_sent(self, ids: Sequence[int], token: str, now: datetime) -> int:
        return self._finish(ids, token, {
            "status": DeliveryStatus.SENT.value, "sent_at": now, "claimed_by": None,
            "claim_expires_at": None, "last_error": None,
        })

    def release(self, ids: Sequence[int], token: str) -> int:
        """Give rows back untouched (not attempted), e.g. when a digest could not be taken."""
        return self._finish(ids, token, {"claimed_by": None, "claim_expires_at": None})

    def mark_failed(
        self,
        ids: Sequence[int],
        token: str,
        now: datetime,
        error: str,
        *,
        max_attempts: int,
        backoff: Callable[[int], timedelta],
    ) -> int:
        """Count a failed attempt: back to pending after ``backoff(attempts)``, or failed."""
        m = AlertDeliveryModel
        with self._sessions() as s:
            attempts = {
                row_id: count
                for row_id, count in s.execute(
                    sa.select(m.id, m.attempts).where(m.id.in_(ids), m.claimed_by == token)
                )
            }
        changed = 0
        with self._sessions() as s, s.begin():
            for row_id, before in attempts.items():
                count = before + 1
                gave_up = count >= max_attempts
                result = s.execute(
                    sa.update(m)
                    .where(m.id == row_id, m.claimed_by == token)
                    .values(
                        attempts=count,
                        last_error=error[:MAX_ERROR_CHARS],
                        claimed_by=None,
                        claim_expires_at=None,
                        status=(
                            DeliveryStatus.FAILED if gave_up else DeliveryStatus.PENDING
                        ).value,
                        next_attempt_at=None if gave_up else now + backoff(count),
                    )
                    .execution_options(synchronize_session=False)
                )
                changed += _rowcount(result)
        return changed

    def _finish(self, ids: Sequence[int], token: str, values: dict[str, Any]) -> int:
        if not ids:
            return 0
        m = AlertDeliveryModel
        total = 0
        with self._sessions() as s, s.begin():
            for i in range(0, len(ids), _CHUNK):
                result = s.execute(
                    sa.update(m)
                    .where(m.id.in_(ids[i : i + _CHUNK]), m.claimed_by == token)
                    .values(**values)
                    .execution_options(synchronize_session=False)
                )
                total += _rowcount(result)
        return total

    # ------------------------------------------------------------- reading

    def deliveries(
        self, *, channel: str | None = None, include_digests: bool = False
    ) -> list[Delivery]:
        m = AlertDeliveryModel
        query = sa.select(m).order_by(m.id)
        if channel is not None:
            query = query.where(m.channel == channel)
        if not include_digests:
            query = query.where(m.kind != DIGEST)
        with self._sessions() as s:
            return [_delivery_from(x) for x in s.scalars(query)]

    def role_problems(self, since: datetime, needle: str) -> list[tuple[str, datetime, str]]:
        """(app id, when, text) of audit events and rotations whose text contains ``needle``."""
        pattern = f"%{needle}%"
        out: list[tuple[str, datetime, str]] = []
        with self._sessions() as s:
            for a in s.scalars(
                sa.select(AuditEventModel).where(
                    AuditEventModel.at >= since,
                    AuditEventModel.app_id.is_not(None),
                    AuditEventModel.message.like(pattern),
                )
            ):
                assert a.app_id is not None
                out.append((a.app_id, a.at, a.message))
            for r in s.scalars(
                sa.select(RotationModel).where(
                    RotationModel.updated_at >= since, RotationModel.last_error.like(pattern)
                )
            ):
                out.append((r.app_id, r.updated_at, r.last_error or ""))
        return out

    def recent_scans(self, since: datetime, limit: int) -> list[ScanRun]:
        """Scans started since ``since``, newest first."""
        with self._sessions() as s:
            return [
                _scan_from_model(m)
                for m in s.scalars(
                    sa.select(ScanRunModel)
                    .where(ScanRunModel.started_at >= since)
                    .order_by(ScanRunModel.started_at.desc(), ScanRunModel.id.desc())
                    .limit(limit)
                )
            ]
