"""Hook events as data: the CloudEvents envelope, the signature, stable ids, backoff."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta

from rotator.domain.hooks import (
    EventType,
    event_id,
    hook_retry_delay,
    make_event,
    signature,
    signature_matches,
)

AT = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def test_the_envelope_is_cloudevents_1_0_structured_mode() -> None:
    event = make_event(EventType.PROMOTED, rotation_id="r1", app_id="app-1", at=AT,
                       key_id="new", secret_name="s")
    body = json.loads(event.body())
    assert body["specversion"] == "1.0" and body["source"] == "rotator"
    assert body["type"] == "rotator.credential.promoted" and body["subject"] == "app-1"
    assert body["time"] == "2026-11-28T12:00:00Z"
    assert body["id"] == event_id("r1", EventType.PROMOTED)
    assert set(body["data"]) == {"app_id", "display_name", "kind", "key_id", "old_key_id",
                                 "secret_name", "vault_url", "secret_version", "rotation_id"}


def test_ids_are_stable_per_rotation_and_type() -> None:
    assert event_id("r1", EventType.PROMOTED) == event_id("r1", EventType.PROMOTED)
    assert event_id("r1", EventType.PROMOTED) != event_id("r1", EventType.RETIRED)
    assert event_id("r1", EventType.PROMOTED) != event_id("r2", EventType.PROMOTED)


def test_the_signature_is_hmac_sha256_of_the_exact_body() -> None:
    body = b'{"a":1}'
    expected = hmac.new(b"k", body, hashlib.sha256).hexdigest()
    assert signature(b"k", body) == f"sha256={expected}"
    assert signature_matches(b"k", body, f"sha256={expected}")
    assert not signature_matches(b"k", body + b" ", f"sha256={expected}")
    assert not signature_matches(b"other", body, f"sha256={expected}")
    assert not signature_matches(b"k", body, None)


def test_the_environment_of_a_command_carries_every_field() -> None:
    event = make_event(EventType.RETIRED, rotation_id="r1", app_id="app-1", at=AT,
                       key_id="new", old_key_id="old")
    env = event.environment()
    assert env["ROTATOR_EVENT_TYPE"] == "rotator.credential.retired"
    assert env["ROTATOR_EVENT_OLD_KEY_ID"] == "old"
    assert env["ROTATOR_EVENT_SECRET_VERSION"] == ""  # unknown: empty, not "None"


def test_retries_back_off_and_are_capped() -> None:
    delays = [hook_retry_delay(n) for n in range(1, 15)]
    assert delays[:3] == [timedelta(seconds=5), timedelta(seconds=10), timedelta(seconds=20)]
    assert delays == sorted(delays) and delays[-1] == timedelta(hours=1)
