"""A rotation as a plain record: what the engine reads, decides on and writes back."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum

from rotator.domain.credentials import CredentialKind
from rotator.domain.states import ACTIVE_STATES, RotationState, check_transition


class Registration(StrEnum):
    """How a new certificate reached the app's keyCredentials."""

    ADD_KEY = "addKey"  # proven by the certificate rotator stored last time
    PATCH = "patch"  # a race-checked PATCH of the whole list (nothing to sign with)


class RotationReason(StrEnum):
    DUE = "due"  # the scheduler found the credential inside its renewal window
    MANUAL = "manual"  # an admin asked for it (``rotator rotate``)


def new_rotation_id() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True, slots=True)
class Rotation:
    id: str
    app_id: str
    object_id: str
    kind: CredentialKind
    state: RotationState
    reason: RotationReason
    secret_name: str
    vault_url: str
    created_at: datetime
    updated_at: datetime
    old_key_id: str | None = None
    new_key_id: str | None = None
    new_key_end_at: datetime | None = None
    staging_version: str | None = None
    consumer_version: str | None = None
    attempts: int = 0
    last_error: str | None = None
    next_attempt_at: datetime | None = None
    retire_after: datetime | None = None
    finished_at: datetime | None = None
    lease_owner: str | None = None
    lease_expires_at: datetime | None = None
    # ``rotator rotate --retire-now``: no grace period after promote.
    retire_now: bool = False
    # Certificates: the new one's SHA-1 thumbprint (tagged on the consumer secret) and
    # how it was registered.
    thumbprint: str | None = None
    registered_by: Registration | None = None
    # How long verification waited for propagation, and how many token requests it took.
    verify_seconds: float | None = None
    verify_attempts: int | None = None
    # When the consumer secret got the new credential (evidence must come after it).
    promoted_at: datetime | None = None
    # retire_when = "unused": why retirement is held ("held: old credential last used at
    # T"), since when, and whether it has waited longer than retire_max_wait_hours.
    held: str | None = None
    held_since: datetime | None = None
    held_overdue: bool = False
    # Why the usage report could not be read, when retirement fell back to the grace rule.
    rule_fallback: str | None = None

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_STATES

    @property
    def staging_secret_name(self) -> str:
        return staging_name(self.secret_name)

    def advance(self, target: RotationState, now: datetime, **changes: object) -> Rotation:
        """A copy in ``target`` state; raises if the state table forbids the move."""
        check_transition(self.state, target)
        return replace(self, state=target, updated_at=now, **changes)  # type: ignore[arg-type]

    def with_changes(self, now: datetime, **changes: object) -> Rotation:
        return replace(self, updated_at=now, **changes)  # type: ignore[arg-type]


def staging_name(secret_name: str) -> str:
    """The staging secret beside the consumer secret; consumers never read it."""
    return f"{secret_name}-next"


def credential_display_name(rotation_id: str) -> str:
    """The new credential's display name carries the rotation id so recovery can find it."""
    return f"rotator:{rotation_id}"


def rotation_id_from_display_name(display_name: str | None) -> str | None:
    if display_name and display_name.startswith("rotator:"):
        rid = display_name.removeprefix("rotator:")
        return rid or None
    return None
