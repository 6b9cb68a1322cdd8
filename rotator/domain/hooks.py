"""Consumer hooks: the events a rotation sends to the app's consumers, as plain data.

A hook is told when a new credential is in the consumer secret (so a consumer that
read its secret once can be restarted or told to re-read), when the old one is gone,
when a rotation failed and when a retirement is held. Webhooks get a CloudEvents 1.0
structured-mode JSON body signed with HMAC-SHA256; commands get the same fields in
``ROTATOR_EVENT_*`` environment variables.

An event's ``id`` is derived from the rotation and the event type, so every retry and
every re-send after a crash carries the same id and receivers can de-duplicate.
Nothing here is ever a secret value: the data names where the secret is, not what.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Final

SPEC_VERSION: Final = "1.0"
SOURCE: Final = "rotator"
CONTENT_TYPE: Final = "application/cloudevents+json"
SIGNATURE_HEADER: Final = "X-Rotator-Signature"
ENV_PREFIX: Final = "ROTATOR_EVENT_"
# A fixed namespace: event ids are uuid5(namespace, "<rotation id>/<event type>").
_ID_NAMESPACE: Final = uuid.UUID("6f1c1f2e-5a53-4f0e-9a57-2b7f4c1d0e11")


class HookKind(StrEnum):
    WEBHOOK = "webhook"
    COMMAND = "command"


class EventType(StrEnum):
    PROMOTED = "rotator.credential.promoted"
    RETIRED = "rotator.credential.retired"
    FAILED = "rotator.rotation.failed"
    HELD = "rotator.retirement.held"

    @property
    def short(self) -> str:
        """The name a policy file uses: promoted, retired, failed, held."""
        return {
            EventType.PROMOTED: "promoted",
            EventType.RETIRED: "retired",
            EventType.FAILED: "failed",
            EventType.HELD: "held",
        }[self]


EVENT_NAMES: Final[Mapping[str, EventType]] = {t.short: t for t in EventType}

# The fields of every event's data, in order; all strings or null.
DATA_FIELDS: Final = (
    "app_id",
    "display_name",
    "kind",
    "key_id",
    "old_key_id",
    "secret_name",
    "vault_url",
    "secret_version",
    "rotation_id",
)


def event_id(rotation_id: str, event_type: EventType) -> str:
    """Stable per rotation and event type: a retry or a re-send is the same event."""
    return str(uuid.uuid5(_ID_NAMESPACE, f"{rotation_id}/{event_type.value}"))


@dataclass(frozen=True, slots=True)
class HookEvent:
    id: str
    type: EventType
    subject: str  # the app id
    time: datetime
    data: Mapping[str, str | None] = field(default_factory=dict)

    def cloudevent(self) -> dict[str, object]:
        """The CloudEvents 1.0 structured-mode envelope."""
        return {
            "specversion": SPEC_VERSION,
            "id": self.id,
            "source": SOURCE,
            "type": self.type.value,
            "subject": self.subject,
            "time": self.time.isoformat().replace("+00:00", "Z"),
            "datacontenttype": "application/json",
            "data": {k: self.data.get(k) for k in DATA_FIELDS},
        }

    def body(self) -> bytes:
        """The exact bytes that are posted and signed."""
        return json.dumps(self.cloudevent(), separators=(",", ":"), sort_keys=True).encode()

    def environment(self) -> dict[str, str]:
        """``ROTATOR_EVENT_*`` variables for a command hook; null fields are empty strings."""
        env = {
            f"{ENV_PREFIX}ID": self.id,
            f"{ENV_PREFIX}TYPE": self.type.value,
            f"{ENV_PREFIX}SUBJECT": self.subject,
            f"{ENV_PREFIX}TIME": self.time.isoformat(),
        }
        for name in DATA_FIELDS:
            env[f"{ENV_PREFIX}{name.upper()}"] = self.data.get(name) or ""
        return env


def make_event(
    event_type: EventType,
    *,
    rotation_id: str,
    app_id: str,
    at: datetime,
    display_name: str | None = None,
    kind: str | None = None,
    key_id: str | None = None,
    old_key_id: str | None = None,
    secret_name: str | None = None,
    vault_url: str | None = None,
    secret_version: str | None = None,
) -> HookEvent:
    data: dict[str, str | None] = {
        "app_id": app_id,
        "display_name": display_name,
        "kind": kind,
        "key_id": key_id,
        "old_key_id": old_key_id,
        "secret_name": secret_name,
        "vault_url": vault_url,
        "secret_version": secret_version,
        "rotation_id": rotation_id,
    }
    return HookEvent(event_id(rotation_id, event_type), event_type, app_id, at, data)


def signature(key: bytes, body: bytes) -> str:
    """The ``X-Rotator-Signature`` header value: ``sha256=<hex HMAC-SHA256 of the body>``."""
    return "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()


def signature_matches(key: bytes, body: bytes, header: str | None) -> bool:
    """For receivers (and tests): constant-time check of a signature header."""
    return header is not None and hmac.compare_digest(signature(key, body), header)


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"


@dataclass(frozen=True, slots=True)
class HookDelivery:
    """One event for one hook of one rotation: recorded before it is sent."""

    rotation_id: str
    app_id: str
    hook: str
    event: HookEvent
    status: DeliveryStatus
    attempts: int = 0
    next_attempt_at: datetime | None = None
    last_error: str | None = None
    delivered_at: datetime | None = None
    # When the delivery was first recorded (before its first attempt).
    created_at: datetime | None = None

    @property
    def delivered(self) -> bool:
        return self.status is DeliveryStatus.DELIVERED

    def failing(self, now: datetime, min_attempts: int) -> bool:
        """Worth a person's attention: not delivered, failed at least ``min_attempts``
        times and for at least :data:`HOOK_FAILING_AFTER` since it was recorded.

        A receiver that is restarting, or a rollout that is slow for a few minutes, is
        what the retries are for; only one that stays down that long is a problem.
        """
        if self.delivered or self.last_error is None or self.attempts < min_attempts:
            return False
        since = self.created_at or self.event.time
        return now - since >= HOOK_FAILING_AFTER


# A promoted rotation whose hooks have not all taken the event says so in its
# ``last_error``, starting with this; it is waiting, not failing.
HOOK_WAIT: Final = "retirement waits for consumer hooks"
# A delivery still failing after this long (and ``[alerts] retrying_attempts``
# attempts) is alerted; before that the backoff's retries are expected to get through.
HOOK_FAILING_AFTER: Final = timedelta(minutes=15)

HOOK_RETRY_BASE: Final = timedelta(seconds=5)
HOOK_RETRY_CAP: Final = timedelta(hours=1)


def hook_retry_delay(attempts: int) -> timedelta:
    """After ``attempts`` failed sends: 5 s doubling, capped at an hour. Never gives up."""
    exponent = max(0, min(attempts - 1, 20))
    delay: timedelta = HOOK_RETRY_BASE * (2**exponent)
    return min(delay, HOOK_RETRY_CAP)
