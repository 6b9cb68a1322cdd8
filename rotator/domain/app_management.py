"""Tenant app management policies as they bear on rotation: what a new credential may be.

Pure: the Graph adapter turns policy JSON into :class:`CredentialRestrictions`, the
engine asks :func:`cap_lifetime` before creating anything. When the policy cannot be
read, Graph's refusal is the only evidence; :func:`refused_policy_id` and
:func:`shorter_lifetimes` let the engine react to it the same way.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Final

from rotator.domain.credentials import AppRegistration, Credential, CredentialKind

LIFETIME_REFUSAL: Final = "CredentialInvalidLifetimeAsPerAppPolicy"
TYPE_REFUSAL: Final = "CredentialTypeNotAllowedAsPerAppPolicy"
# Lifetimes tried, longest first, when Graph refuses one and the policy cannot be read.
LIFETIME_LADDER_DAYS: Final = (730, 365, 180, 90, 60, 30, 14, 7, 1)

_DURATION: Final = re.compile(
    r"^P(?!$)(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)W)?(?:(\d+)D)?"
    r"(?:T(?=\d)(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?$"
)
_POLICY_IN_MESSAGE: Final = re.compile(r"policy\s+'([^']+)'", re.I)


class PolicyParseError(ValueError):
    pass


def parse_duration(text: str) -> timedelta:
    """An ISO-8601 duration as Graph writes ``maxLifetime`` (a year is 365 days, a month 30)."""
    match = _DURATION.match(text.strip())
    if match is None:
        raise PolicyParseError(f"not an ISO-8601 duration: {text[:40]!r}")
    years, months, weeks, days, hours, minutes, seconds = match.groups()
    return timedelta(
        days=int(years or 0) * 365 + int(months or 0) * 30 + int(weeks or 0) * 7 + int(days or 0),
        hours=int(hours or 0),
        minutes=int(minutes or 0),
        seconds=float(seconds or 0),
    )


@dataclass(frozen=True, slots=True)
class CredentialRestrictions:
    """The restrictions of the policy in force for one app (its own, else the default)."""

    policy_id: str
    source: str  # "application" or "tenant default"
    password_max_lifetime: timedelta | None = None
    password_addition_blocked: bool = False
    key_max_lifetime: timedelta | None = None

    def describe(self) -> str:
        return f"app management policy '{self.policy_id}' ({self.source})"


def restrictions_from(
    policy_id: str,
    source: str,
    password: Sequence[Mapping[str, object]],
    key: Sequence[Mapping[str, object]],
) -> CredentialRestrictions:
    """Combine a policy's restriction entries; disabled entries do not count.

    ``restrictForAppsCreatedAfterDateTime`` is deliberately ignored: honouring it would
    only ever allow a longer lifetime than the tenant might enforce.
    """
    blocked = False
    password_max: timedelta | None = None
    key_max: timedelta | None = None
    for entry in password:
        if str(entry.get("state") or "enabled") != "enabled":
            continue
        kind = entry.get("restrictionType")
        if kind == "passwordAddition":
            blocked = True
        elif kind == "passwordLifetime" and entry.get("maxLifetime") is not None:
            found = parse_duration(str(entry["maxLifetime"]))
            password_max = found if password_max is None else min(password_max, found)
    for entry in key:
        if str(entry.get("state") or "enabled") != "enabled":
            continue
        if entry.get("restrictionType") == "asymmetricKeyLifetime" and entry.get(
            "maxLifetime"
        ) is not None:
            found = parse_duration(str(entry["maxLifetime"]))
            key_max = found if key_max is None else min(key_max, found)
    return CredentialRestrictions(policy_id, source, password_max, blocked, key_max)


@dataclass(frozen=True, slots=True)
class TenantPolicies:
    """Every app management policy in force: the enabled tenant default, and the apps
    that have an enabled policy of their own (by application object id), which replaces
    the default for them."""

    default: CredentialRestrictions | None = None
    by_app: Mapping[str, CredentialRestrictions] = field(default_factory=dict)

    def for_app(self, object_id: str) -> CredentialRestrictions | None:
        return self.by_app.get(object_id.lower(), self.default)


def max_lifetime(restrictions: CredentialRestrictions, kind: CredentialKind
                 ) -> timedelta | None:
    """The longest lifetime the policy allows a new credential of ``kind``."""
    if kind is CredentialKind.SECRET:
        return restrictions.password_max_lifetime
    return restrictions.key_max_lifetime


def cap_lifetime(wanted: timedelta, maximum: timedelta | None) -> timedelta:
    """The lifetime to ask for: ``wanted``, or the policy maximum when that is shorter.

    A minute of margin keeps the request inside the limit although Graph's clock
    starts the credential a little after rotator computed its end.
    """
    if maximum is None or wanted <= maximum:
        return wanted
    return max(maximum - timedelta(minutes=1), timedelta(minutes=1))


def refused_policy_id(message: str) -> str | None:
    """The policy a ``CredentialInvalidLifetimeAsPerAppPolicy`` refusal names, if any."""
    match = _POLICY_IN_MESSAGE.search(message)
    return match.group(1) if match else None


def shorter_lifetimes(refused: timedelta) -> list[timedelta]:
    """Lifetimes to try after ``refused`` was refused, longest first."""
    return [timedelta(days=d) for d in LIFETIME_LADDER_DAYS if timedelta(days=d) < refused]


# ---------------------------------------------------------------- signInAudience limits

PERSONAL_AUDIENCES: Final = frozenset(
    {"AzureADandPersonalMicrosoftAccount", "PersonalMicrosoftAccount"})
PERSONAL_PASSWORD_LIMIT: Final = 2


@dataclass(frozen=True, slots=True)
class PasswordRoom:
    """Whether one more client secret fits, and which expired ones to remove first."""

    fits: bool
    limit: int | None = None
    remove: tuple[Credential, ...] = ()
    held: int = 0


def password_room(app: AppRegistration, now: datetime) -> PasswordRoom:
    """Apps open to personal Microsoft accounts hold at most two secrets. At the limit,
    expired secrets (those that ended longest ago first) may go; a valid one never does."""
    if app.sign_in_audience not in PERSONAL_AUDIENCES:
        return PasswordRoom(True)
    secrets = app.of_kind(CredentialKind.SECRET)
    need = len(secrets) - PERSONAL_PASSWORD_LIMIT + 1
    if need <= 0:
        return PasswordRoom(True, PERSONAL_PASSWORD_LIMIT, held=len(secrets))
    expired = sorted((c for c in secrets if c.end is not None and c.end <= now),
                     key=lambda c: c.end or now)
    if len(expired) < need:
        return PasswordRoom(False, PERSONAL_PASSWORD_LIMIT, held=len(secrets))
    return PasswordRoom(True, PERSONAL_PASSWORD_LIMIT, tuple(expired[:need]), len(secrets))
