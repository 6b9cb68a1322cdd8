"""Graph application JSON -> domain values. Pure, so malformed input is easy to test.

The scan reads pages as raw JSON instead of msgraph-sdk models: one app that does
not parse must not stop the scan, and model parsing of large tenants is slow.

Anything rotator later acts on, or that the inventory columns cannot hold, must be
well formed, or the whole app is refused (and a scan reports it and keeps the app's
last known inventory): ids are GUIDs, credential lists and end dates are present.
Graph leaves out values it has no data for (``displayName``, ``hint``,
``startDateTime``), so their absence is fine.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Final

from rotator.domain.credentials import (
    USAGE_SECRET,
    USAGE_SIGN,
    USAGE_VERIFY,
    AppRegistration,
    Credential,
    CredentialKind,
    CredentialSource,
)

APP_SELECT = ("id", "appId", "displayName", "signInAudience", "passwordCredentials",
              "keyCredentials")
SP_SELECT = ("id", "appId", "displayName", "appOwnerOrganizationId",
             "preferredSingleSignOnMode", "preferredTokenSigningKeyThumbprint",
             "passwordCredentials", "keyCredentials")
# Owners come with the listing (one request a page of 100) rather than per object.
OWNERS_EXPAND = "owners($select=id,mail,userPrincipalName)"
_USER_TYPE: Final = "#microsoft.graph.user"
_USAGES: Final = frozenset({USAGE_SIGN, USAGE_VERIFY})
MAX_OWNER_CHARS: Final = 320

# The widths of the inventory columns; PostgreSQL refuses a whole batch over one long value.
MAX_HINT_CHARS: Final = 64
MAX_THUMBPRINT_CHARS: Final = 128
_GUID: Final = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
# Bad values are quoted in scan errors, which people read; a few dozen characters say enough.
_QUOTE_CHARS: Final = 40


class AppParseError(ValueError):
    pass


def quote(value: object) -> str:
    """``value`` for an error message, cut short so a huge value cannot flood a report."""
    text = repr(value)
    return text if len(text) <= _QUOTE_CHARS else f"{text[:_QUOTE_CHARS]}..."


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
    if parsed.utcoffset() == _ZERO:
        return parsed
    try:
        return parsed.astimezone(UTC)
    except OverflowError:
        # 9999-12-31T23:59:59-05:00 is a valid string but not a representable instant.
        raise AppParseError(f"date {quote(value)} is out of range in UTC") from None


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
        raise AppParseError(f"bad date {quote(value)}") from exc


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
        raise AppParseError(f"{key} is not a string but {type(value).__name__}")
    return value


def guid(obj: Mapping[str, object], key: str) -> str:
    """A required GUID in its canonical lower-case form.

    Graph's ids always are GUIDs; anything else would be written into URLs and
    request bodies (``uuid.UUID(key_id)``) and into fixed-width columns later.
    """
    value = _text(obj, key, required=True)
    assert value is not None
    # A pattern, not uuid.UUID(): this runs for every id of every app of a scan.
    if _GUID.fullmatch(value) is None:
        raise AppParseError(f"{key} {quote(value)} is not a GUID")
    return value.lower()


def _date(obj: Mapping[str, object], key: str, *, required: bool = False) -> datetime | None:
    if obj.get(key) is None and required:
        raise AppParseError(f"missing {key}")
    try:
        return parse_datetime(obj.get(key))
    except AppParseError as exc:
        raise AppParseError(f"{key}: {exc}") from None


def _credential(item: object, kind: CredentialKind, *, secret_thumbprints: bool = False
                ) -> Credential:
    if not isinstance(item, Mapping):
        raise AppParseError(f"not an object but {type(item).__name__}")
    key_id = guid(item, "keyId")
    try:
        hint = _text(item, "hint") if kind is CredentialKind.SECRET else None
        if hint is not None and len(hint) > MAX_HINT_CHARS:
            raise AppParseError(f"hint is longer than {MAX_HINT_CHARS} characters")
        thumbprint = (thumbprint_from_custom_key_identifier(item.get("customKeyIdentifier"))
                      if kind is CredentialKind.CERTIFICATE or secret_thumbprints else None)
        if kind is CredentialKind.SECRET and thumbprint is not None and (
                len(thumbprint) > MAX_THUMBPRINT_CHARS):
            # A password carries one only as part of a SAML signing certificate; any
            # other value says nothing rotator uses.
            thumbprint = None
        usage = USAGE_SECRET
        if kind is CredentialKind.CERTIFICATE:
            usage = _text(item, "usage") or USAGE_VERIFY
            if usage not in _USAGES:
                raise AppParseError(f"usage {quote(usage)} is neither Sign nor Verify")
        if thumbprint is not None and len(thumbprint) > MAX_THUMBPRINT_CHARS:
            raise AppParseError("customKeyIdentifier is too long for a thumbprint")
        return Credential(
            key_id=key_id,
            kind=kind,
            display_name=_text(item, "displayName"),
            start=_date(item, "startDateTime"),
            # Without an end the credential would look like one that never expires.
            end=_date(item, "endDateTime", required=True),
            hint=hint,
            thumbprint=thumbprint,
            usage=usage,
        )
    except AppParseError as exc:
        raise AppParseError(f"keyId {key_id}: {exc}") from None


def _credentials(
    obj: Mapping[str, object], key: str, kind: CredentialKind, *,
    secret_thumbprints: bool = False,
) -> list[Credential]:
    items = obj.get(key)
    if items is None:
        # Graph sends [] for an app without credentials; absent means "not told", and
        # reading it as "none" would drop the app's expiry from the inventory.
        raise AppParseError(f"missing {key}")
    if not isinstance(items, list):
        raise AppParseError(f"{key} is not a list but {type(items).__name__}")
    out: list[Credential] = []
    for n, item in enumerate(items):
        try:
            out.append(_credential(item, kind, secret_thumbprints=secret_thumbprints))
        except AppParseError as exc:
            raise AppParseError(f"{key}[{n}]: {exc}") from None
    return out


def parse_application(obj: object) -> AppRegistration:
    if not isinstance(obj, Mapping):
        raise AppParseError(f"application is not an object but {type(obj).__name__}")
    object_id = guid(obj, "id")
    app_id = guid(obj, "appId")
    creds = _credentials(obj, "passwordCredentials", CredentialKind.SECRET) + _credentials(
        obj, "keyCredentials", CredentialKind.CERTIFICATE
    )
    _unique(creds)
    return AppRegistration(
        object_id=object_id,
        app_id=app_id,
        display_name=_text(obj, "displayName") or "",
        credentials=tuple(creds),
        sign_in_audience=_text(obj, "signInAudience"),
        owners=parse_owners(obj),
    )


def _unique(creds: list[Credential]) -> None:
    seen: set[str] = set()
    for c in creds:
        if c.key_id in seen:
            raise AppParseError(f"duplicated keyId {c.key_id}")
        seen.add(c.key_id)


def parse_owners(obj: Mapping[str, object]) -> tuple[str, ...] | None:
    """Mail (else user principal name) of the user owners in an expanded ``owners``;
    ``None`` when the object came without them, or when its only user owners came as
    bare objects (no ``User.Read.All``): owners exist that rotator cannot reach, which
    is not having none. Owners that are service principals are nobody to tell, and are
    left out."""
    if "owners" not in obj:
        return None
    items = obj["owners"]
    if not isinstance(items, list):
        raise AppParseError(f"owners is not a list but {type(items).__name__}")
    found: list[str] = []
    unreadable = False
    for n, item in enumerate(items):
        if not isinstance(item, Mapping):
            raise AppParseError(f"owners[{n}] is not an object")
        if item.get("@odata.type") != _USER_TYPE:
            continue
        address = _text(item, "mail") or _text(item, "userPrincipalName")
        if address is None:
            unreadable = True  # a user rotator may not read (no User.Read.All)
            continue
        if len(address) > MAX_OWNER_CHARS or "@" not in address:
            raise AppParseError(f"owners[{n}]: {quote(address)} is not a mail address")
        if address not in found:
            found.append(address)
    return None if unreadable and not found else tuple(found)


def parse_service_principal(obj: object) -> AppRegistration:
    if not isinstance(obj, Mapping):
        raise AppParseError(
            f"service principal is not an object but {type(obj).__name__}")
    object_id = guid(obj, "id")
    app_id = guid(obj, "appId")
    creds = _credentials(obj, "passwordCredentials", CredentialKind.SECRET,
                         secret_thumbprints=True) + _credentials(
        obj, "keyCredentials", CredentialKind.CERTIFICATE
    )
    _unique(creds)
    saml = (_text(obj, "preferredSingleSignOnMode") or "").lower() == "saml"
    preferred = thumbprint_from_custom_key_identifier(
        _text(obj, "preferredTokenSigningKeyThumbprint"))
    if saml:
        signing = {c.thumbprint for c in creds
                   if c.kind is CredentialKind.CERTIFICATE and c.usage == USAGE_SIGN}
        # The password of a signing certificate protects its private key: part of the
        # certificate, not a secret anyone signs in with.
        creds = [replace(c, usage=USAGE_SIGN) if c.kind is CredentialKind.SECRET
                 and c.thumbprint is not None and c.thumbprint in signing else c
                 for c in creds]
    home = obj.get("appOwnerOrganizationId")
    return AppRegistration(
        object_id=object_id,
        app_id=app_id,
        display_name=_text(obj, "displayName") or "",
        credentials=tuple(creds),
        source=CredentialSource.SERVICE_PRINCIPAL,
        sp_object_id=object_id,
        owners=parse_owners(obj),
        home_tenant_id=guid(obj, "appOwnerOrganizationId") if home is not None else None,
        preferred_signing_thumbprint=preferred,
        saml=saml,
    )


def describe(obj: object) -> tuple[str | None, str]:
    """How a scan names an entry it could not parse: its object id, and what else is known.

    An entry without a usable ``id`` is still named by its ``appId`` or
    ``displayName``, so whoever reads the report can find it.
    """
    if not isinstance(obj, Mapping):
        return None, ""
    raw_id = obj.get("id")
    if isinstance(raw_id, str | int) and not isinstance(raw_id, bool):
        return str(raw_id)[:64], ""
    known = [f"{key} {quote(obj[key])}" for key in ("appId", "displayName")
             if isinstance(obj.get(key), str)]
    return None, f" ({', '.join(known)})" if known else ""
