"""Rotation and inventory records to store: fixed app ids, a fixed time, builders."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from rotator.domain.credentials import CredentialKind
from rotator.domain.records import InventoryRow
from rotator.domain.rotation import Rotation, RotationReason, new_rotation_id
from rotator.domain.states import RotationState

T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
APP_A = "11111111-1111-1111-1111-111111111111"
APP_B = "22222222-2222-2222-2222-222222222222"
APP_C = "33333333-3333-3333-3333-333333333333"


def make_rotation(
    app_id: str = "11111111-1111-1111-1111-111111111111",
    *,
    state: RotationState = RotationState.PENDING,
    rotation_id: str | None = None,
    now: datetime = T0,
    **changes: object,
) -> Rotation:
    return Rotation(
        id=rotation_id or new_rotation_id(),
        app_id=app_id,
        object_id="aaaaaaaa-0000-0000-0000-000000000001",
        kind=CredentialKind.SECRET,
        state=state,
        reason=RotationReason.DUE,
        secret_name="orders-client-secret",
        vault_url="https://127.0.0.1:8443",
        created_at=now,
        updated_at=now,
        **changes,  # type: ignore[arg-type]
    )


def inv(
    app_id: str = APP_A,
    key_id: str = "k1",
    *,
    end_in_days: float | None = 30,
    now: datetime = T0,
    **changes: object,
) -> InventoryRow:
    values: dict[str, object] = {
        "app_id": app_id,
        "key_id": key_id,
        "object_id": f"obj-{app_id[:8]}",
        "app_display_name": f"app {app_id[:8]}",
        "kind": CredentialKind.SECRET,
        "display_name": "client secret",
        "start_at": now - timedelta(days=150),
        "end_at": None if end_in_days is None else now + timedelta(days=end_in_days),
        "hint": "abc",
    }
    values.update(changes)
    return InventoryRow(**values)  # type: ignore[arg-type]
