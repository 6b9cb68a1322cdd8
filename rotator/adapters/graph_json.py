"""Graph application JSON -> domain values. Pure, so malformed input is easy to test.

The scan reads pages as raw JSON instead of msgraph-sdk models: one app that does
not parse must not stop the scan, and model parsing of large tenants is slow.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

from rotator.domain.credentials import AppRegistration, Credential, CredentialKind

APP_SELECT = ("id", "appId", "displayName", "passwordCredentials", "keyCredentials")


class AppParseError(ValueError):
    pass


def parse_datetime(value: object) -> datetime | None:
    """Graph's ISO-8601 dates; naive values are UTC, offsets are converted to UTC."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise AppParseError(f"expected a date string, got {type(value).__name__}")
    try:
        # Python 3.11 reads Graph's usual form (7 fractional digits, "Z") directly.
        parsed = datetime.fromisoformat(value)
    except ValueError:
        parsed = _parse_datetime_slow(value)
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    return parsed if parsed.utcoffset() == _ZERO else parsed.astimezone(UTC)


_ZERO = timedelta(0)


def _parse_datetime_slow(value: str) -> datetime:
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    # Python 3.11 accepts up to 6 fractional digits; Graph sends 7.
    if "." in text:
        head, _, rest = text.partition(".")
        digits = "".join(ch for ch in rest if ch.isdigit())
        tz = rest[len(digits) :]
        text = f"{head}.{digits[:6]}{tz}" if digits else f"{head}{tz}"
    try:
        return datetime.fromisoformat(text)
    except ValueError as exc:
        raise AppParseError(f"bad date {value!r}") from exc


def thumbprint_from_custom_key_identifier(value: object) -> str | None:
    """The SHA-1 thumbprint as upper hex.

    Graph usually sends it as 40 hex characters; some clients set it as base64
    bytes. 40 hex characters are also valid base64, so hex is checked first.
    """
    if not isinstance(value, str) or not value:
        return None
    if len(value) == 40 and all(ch in "0123456789abcdefABCDEF" for ch in value):
        return value.upper()
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return value.upper()
    return raw.hex().upper()


def _text(obj: Mapping[str, object], key: str, *, required: bool = False) -> str | None:
    value = obj.get(key)
    if value is None:
        if required:
            raise AppParseError(f"missing {key}")
        return None
    if not isinstance(value, str):
        raise AppParseError(f"{key} is not a string")
    return value


def _credentials(
    obj: Mapping[str, object], key: str, kind: CredentialKind
) -> list[Credential]:
    items = obj.get(key)
    if items is None:
        return []
    if not isinstance(items, list):
        raise AppParseError(f"{key} is not a list")
    out: list[Credential] = []
    for item in items:
        if not isinstance(item, Mapping):
            raise AppParseError(f"{key} holds a non-object")
        key_id = _text(item, "keyId", required=True)
        assert key_id is not None
        out.append(
            Credential(
                key_id=key_id.lower(),
                kind=kind,
                display_name=_text(item, "displayName"),
                start=parse_datetime(item.get("startDateTime")),
                end=parse_datetime(item.get("endDateTime")),
                hint=_text(item, "hint") if kind is CredentialKind.SECRET else None,
                thumbprint=thumbprint_from_custom_key_identifier(item.get("customKeyIdentifier"))
                if kind is CredentialKind.CERTIFICATE
                else None,
            )
        )
    return out


def parse_application(obj: object) -> AppRegistration:
    if not isinstance(obj, Mapping):
        raise AppParseError("application is not an object")
    object_id = _text(obj, "id", required=True)
    app_id = _text(obj, "appId", required=True)
    assert object_id is not None and app_id is not None
    creds = _credentials(obj, "passwordCredentials", CredentialKind.SECRET) + _credentials(
        obj, "keyCredentials", CredentialKind.CERTIFICATE
    )
    seen: set[str] = set()
    for c in creds:
        if c.key_id in seen:
            raise AppParseError(f"duplicated keyId {c.key_id}")
        seen.add(c.key_id)
    return AppRegistration(
        object_id=object_id.lower(),
        app_id=app_id.lower(),
        display_name=_text(obj, "displayName") or "",
        credentials=tuple(creds),
    )
