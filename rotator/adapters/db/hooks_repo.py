"""The consumer hook state: which rotation event went (or is to go) to which hook.

Insert-then-send, like the alerts: the delivery row (with the whole event) is
written before the first attempt, so an event that was sent but not yet marked
is sent again after a crash with the same id (at least once; receivers
de-duplicate on the id). Never a secret value.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from rotator.adapters.db.models import HookDeliveryModel
from rotator.adapters.db.repo import MAX_ERROR_CHARS, _jsonable
from rotator.adapters.db.session import make_sessionmaker
from rotator.domain.hooks import DeliveryStatus, EventType, HookDelivery, HookEvent

_UNIQUE = ["rotation_id", "hook", "event_type"]


def _delivery_from(m: HookDeliveryModel) -> HookDelivery:
    data = {str(k): (None if v is None else str(v)) for k, v in (m.data or {}).items()}
    event = HookEvent(m.event_id, EventType(m.event_type), m.app_id, m.event_time, data)
    return HookDelivery(
        rotation_id=m.rotation_id,
        app_id=m.app_id,
        hook=m.hook,
        event=event,
        status=DeliveryStatus(m.status),
        attempts=m.attempts,
        next_attempt_at=m.next_attempt_at,
        last_error=m.last_error,
        delivered_at=m.delivered_at,
        created_at=m.created_at,
    )


class SqlHookStore:
    """:class:`rotator.ports.HookStore` on the same database as the ``SqlStore``,
    which hands it out as ``store.hooks``."""

    def __init__(self, engine: sa.Engine) -> None:
        self._engine = engine
        self._make_session = make_sessionmaker(engine)

    def ensure(self, hook: str, event: HookEvent, rotation_id: str, now: datetime
               ) -> HookDelivery:
        row: dict[str, Any] = {
            "rotation_id": rotation_id,
            "app_id": event.subject.lower(),
            "hook": hook,
            "event_type": event.type.value,
            "event_id": event.id,
            "event_time": event.time,
            "data": _jsonable(dict(event.data), "hook event data"),
            "status": DeliveryStatus.PENDING.value,
            "attempts": 0,
            "next_attempt_at": now,
            "last_error": None,
            "created_at": now,
            "delivered_at": None,
        }
        table: Any = HookDeliveryModel.__table__
        with self._engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                stmt: Any = postgresql.insert(table).on_conflict_do_nothing(
                    index_elements=_UNIQUE)
            elif conn.dialect.name == "sqlite":
                stmt = sqlite.insert(table).on_conflict_do_nothing(index_elements=_UNIQUE)
            else:  # pragma: no cover - only the two supported databases
                raise NotImplementedError(conn.dialect.name)
            conn.execute(stmt, [row])
        found = self._get(rotation_id, hook, event.type.value)
        assert found is not None
        return found

    def _get(self, rotation_id: str, hook: str, event_type: str) -> HookDelivery | None:
        with self._make_session() as s:
            m = s.scalars(sa.select(HookDeliveryModel).where(
                HookDeliveryModel.rotation_id == rotation_id,
                HookDeliveryModel.hook == hook,
                HookDeliveryModel.event_type == event_type,
            )).one_or_none()
            return None if m is None else _delivery_from(m)

    def _update(self, hook: str, event_id: str, values: dict[str, Any]) -> HookDelivery:
        """Count one attempt and write its outcome; a delivered row stays as it is."""
        with self._make_session() as s, s.begin():
            m = s.scalars(sa.select(HookDeliveryModel).where(
                HookDeliveryModel.hook == hook, HookDeliveryModel.event_id == event_id,
            ).with_for_update()).one()
            if m.status == DeliveryStatus.DELIVERED.value:
                return _delivery_from(m)  # delivered stays delivered
            for key, value in values.items():
                setattr(m, key, value)
            m.attempts = (m.attempts or 0) + 1
            s.flush()
            return _delivery_from(m)

    def mark_delivered(self, hook: str, event_id: str, now: datetime) -> HookDelivery:
        return self._update(hook, event_id, {
            "status": DeliveryStatus.DELIVERED.value, "delivered_at": now,
            "next_attempt_at": None,
        })

    def mark_failed(self, hook: str, event_id: str, now: datetime, error: str,
                    next_attempt_at: datetime) -> HookDelivery:
        return self._update(hook, event_id, {
            "last_error": error[:MAX_ERROR_CHARS], "next_attempt_at": next_attempt_at,
        })

    def for_rotation(self, rotation_id: str) -> list[HookDelivery]:
        with self._make_session() as s:
            rows = s.scalars(sa.select(HookDeliveryModel).where(
                HookDeliveryModel.rotation_id == rotation_id
            ).order_by(HookDeliveryModel.id)).all()
            return [_delivery_from(m) for m in rows]

    def due(self, now: datetime, limit: int) -> list[HookDelivery]:
        with self._make_session() as s:
            rows = s.scalars(sa.select(HookDeliveryModel).where(
                HookDeliveryModel.status == DeliveryStatus.PENDING.value,
                HookDeliveryModel.next_attempt_at <= now,
            ).order_by(HookDeliveryModel.next_attempt_at, HookDeliveryModel.id).limit(limit)
            ).all()
            return [_delivery_from(m) for m in rows]

    def pending(self, limit: int) -> list[HookDelivery]:
        with self._make_session() as s:
            rows = s.scalars(sa.select(HookDeliveryModel).where(
                HookDeliveryModel.status == DeliveryStatus.PENDING.value,
            ).order_by(HookDeliveryModel.created_at, HookDeliveryModel.id).limit(limit)).all()
            return [_delivery_from(m) for m in rows]
