"""App management policies: the tenant default and per-app policies that restrict credentials.

Shapes follow Graph v1.0 (``tenantAppManagementPolicy`` and ``appManagementPolicy``).
Only the credential restrictions rotator meets are enforced: ``passwordAddition``
(blocked), ``passwordLifetime`` and ``asymmetricKeyLifetime`` (``maxLifetime`` as an
ISO-8601 duration). An app's own enabled policy replaces the tenant default for that app.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from rotator.emulator.errors import GraphError
from rotator.emulator.model import iso
from rotator.emulator.timeparse import parse_iso

DEFAULT_POLICY_ID = "00000000-0000-0000-0000-000000000000"
PASSWORD_TYPES = frozenset(
    {
        "passwordAddition",
        "passwordLifetime",
        "symmetricKeyAddition",
        "symmetricKeyLifetime",
        "customPasswordAddition",
    }
)
KEY_TYPES = frozenset({"asymmetricKeyLifetime", "trustedCertificateAuthority"})
_DURATION = re.compile(
    r"^P(?!$)(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)W)?(?:(\d+)D)?"
    r"(?:T(?=\d)(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?$"
)


def parse_duration(text: str) -> timedelta:
    """ISO-8601 durations as Graph takes them (years are 365 days, months 30)."""
    match = _DURATION.match(text.strip())
    if match is None:
        raise ValueError(text)
    years, months, weeks, days, hours, minutes, seconds = match.groups()
    return timedelta(
        days=int(years or 0) * 365 + int(months or 0) * 30 + int(weeks or 0) * 7 + int(days or 0),
        hours=int(hours or 0),
        minutes=int(minutes or 0),
        seconds=float(seconds or 0),
    )


@dataclass(slots=True)
class Restriction:
    restriction_type: str
    max_lifetime: timedelta | None = None
    max_lifetime_text: str | None = None
    restrict_after: datetime | None = None
    state: str = "enabled"

    def applies_to(self, created: datetime) -> bool:
        if self.state != "enabled":
            return False
        return self.restrict_after is None or created >= self.restrict_after

    def to_json(self) -> dict[str, Any]:
        return {
            "restrictionType": self.restriction_type,
            "state": self.state,
            "maxLifetime": self.max_lifetime_text,
            "restrictForAppsCreatedAfterDateTime": iso(self.restrict_after),
        }


@dataclass(slots=True)
class Restrictions:
    password: list[Restriction] = field(default_factory=list)
    key: list[Restriction] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "passwordCredentials": [r.to_json() for r in self.password],
            "keyCredentials": [r.to_json() for r in self.key],
        }


@dataclass(slots=True)
class Policy:
    id: str
    display_name: str
    description: str
    is_enabled: bool
    restrictions: Restrictions = field(default_factory=Restrictions)

    def to_json(self, *, tenant_default: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "deletedDateTime": None,
            "displayName": self.display_name,
            "description": self.description,
            "isEnabled": self.is_enabled,
        }
        if tenant_default:
            out["applicationRestrictions"] = self.restrictions.to_json()
            out["servicePrincipalRestrictions"] = self.restrictions.to_json()
        else:
            out["restrictions"] = self.restrictions.to_json()
        return out


def new_default_policy() -> Policy:
    return Policy(
        DEFAULT_POLICY_ID,
        "Default app management tenant policy",
        "Default tenant policy that enforces app management restrictions on applications "
        "and service principals.",
        False,
    )


def _bad(message: str) -> GraphError:
    return GraphError(400, "Request_BadRequest", message)


def parse_restriction(raw: object, allowed: frozenset[str]) -> Restriction:
    if not isinstance(raw, dict):
        raise _bad("Invalid restriction: expected an object.")
    kind = raw.get("restrictionType")
    if kind not in allowed:
        raise _bad(f"Invalid value specified for property 'restrictionType': '{kind}'.")
    text = raw.get("maxLifetime")
    lifetime = None
    if text is not None:
        try:
            lifetime = parse_duration(str(text))
        except ValueError as exc:
            raise _bad(f"Invalid value specified for property 'maxLifetime': '{text}'.") from exc
    if str(kind).endswith("Lifetime") and lifetime is None:
        raise _bad(f"Property 'maxLifetime' is required for restriction '{kind}'.")
    after = raw.get("restrictForAppsCreatedAfterDateTime")
    try:
        restrict_after = parse_iso(str(after)) if after is not None else None
    except ValueError as exc:
        raise _bad(
            "Invalid value specified for property 'restrictForAppsCreatedAfterDateTime'."
        ) from exc
    state = str(raw.get("state") or "enabled")
    if state not in ("enabled", "disabled"):
        raise _bad(f"Invalid value specified for property 'state': '{state}'.")
    return Restriction(str(kind), lifetime, None if text is None else str(text), restrict_after,
                       state)


def parse_restrictions(raw: object) -> Restrictions:
    if raw is None:
        return Restrictions()
    if not isinstance(raw, dict):
        raise _bad("Invalid value specified for property 'restrictions'.")
    password = raw.get("passwordCredentials") or []
    key = raw.get("keyCredentials") or []
    if not isinstance(password, list) or not isinstance(key, list):
        raise _bad("Invalid value specified for property 'restrictions'.")
    return Restrictions(
        [parse_restriction(r, PASSWORD_TYPES) for r in password],
        [parse_restriction(r, KEY_TYPES) for r in key],
    )


def lifetime_refusal(policy_id: str) -> GraphError:
    return GraphError(
        400,
        "CredentialInvalidLifetimeAsPerAppPolicy",
        f"Credential lifetime exceeds the max value allowed as per assigned policy '{policy_id}'",
        details=[{"code": "InvalidKeyEndDate", "target": "EndDate"}],
    )


def type_refusal(policy_id: str) -> GraphError:
    return GraphError(
        400,
        "CredentialTypeNotAllowedAsPerAppPolicy",
        f"Credential type not allowed as per assigned policy '{policy_id}'",
        details=[{"code": "InvalidCredentialType", "target": "PasswordCredentials"}],
    )


def check_password(policy: Policy | None, created: datetime, start: datetime,
                   end: datetime) -> None:
    if policy is None:
        return
    for r in policy.restrictions.password:
        if not r.applies_to(created):
            continue
        if r.restriction_type == "passwordAddition":
            raise type_refusal(policy.id)
        if (r.restriction_type == "passwordLifetime" and r.max_lifetime is not None
                and end - start > r.max_lifetime):
            raise lifetime_refusal(policy.id)


def check_key(policy: Policy | None, created: datetime, start: datetime, end: datetime) -> None:
    if policy is None:
        return
    for r in policy.restrictions.key:
        if (r.applies_to(created) and r.restriction_type == "asymmetricKeyLifetime"
                and r.max_lifetime is not None and end - start > r.max_lifetime):
            raise lifetime_refusal(policy.id)
