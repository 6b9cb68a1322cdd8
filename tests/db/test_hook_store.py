"""Hook deliveries on SQLite and PostgreSQL: recorded once, re-sent whole, never un-delivered."""

from __future__ import annotations

from datetime import timedelta

from rotator.adapters.db import SqlStore
from rotator.domain.hooks import EventType, make_event
from tests.support.records import APP_A, T0


def test_a_delivery_is_recorded_once_and_keeps_its_event(store: SqlStore) -> None:
    event = make_event(EventType.PROMOTED, rotation_id="r1", app_id=APP_A, at=T0,
                       key_id="new", old_key_id="old", secret_name="s", vault_url="https://v")
    first = store.hooks.ensure("webhook-1", event, "r1", T0)
    later = make_event(EventType.PROMOTED, rotation_id="r1", app_id=APP_A,
                       at=T0 + timedelta(hours=1))
    again = store.hooks.ensure("webhook-1", later, "r1", T0 + timedelta(hours=1))
    assert again == first and again.event == event  # the first recording wins, whole
    assert [d.event.id for d in store.hooks.due(T0, 10)] == [event.id]

    failed = store.hooks.mark_failed("webhook-1", event.id, T0, "HTTP 503",
                                     T0 + timedelta(seconds=5))
    assert (failed.attempts, failed.last_error, failed.delivered) == (1, "HTTP 503", False)
    assert store.hooks.due(T0, 10) == []
    assert len(store.hooks.due(T0 + timedelta(seconds=5), 10)) == 1

    done = store.hooks.mark_delivered("webhook-1", event.id, T0 + timedelta(seconds=6))
    assert done.delivered and done.attempts == 2 and done.next_attempt_at is None
    # A late failure report (another replica's slow attempt) does not undo a delivery.
    assert store.hooks.mark_failed("webhook-1", event.id, T0, "x", T0).delivered
    assert store.hooks.due(T0 + timedelta(days=1), 10) == []
    other = store.hooks.ensure("command-1", event, "r1", T0)
    assert [d.hook for d in store.hooks.for_rotation("r1")] == ["webhook-1", "command-1"]
    assert not other.delivered
    # Not yet taken, due or not, oldest first, with when each was first recorded.
    pending = store.hooks.pending(10)
    assert [(d.hook, d.created_at) for d in pending] == [("command-1", T0)]
    assert first.created_at == T0
