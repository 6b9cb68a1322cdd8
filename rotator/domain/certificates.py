"""Certificate credentials as plain values: thumbprints, proof claims, key-list edits.

Nothing here generates keys or talks to Graph (see ``rotator.certificate_material`` and
the engine); these are the rules the engine applies to what it read.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Final

PEM_CONTENT_TYPE: Final = "application/x-pem-file"
PKCS12_CONTENT_TYPE: Final = "application/x-pkcs12"
CERTIFICATE_CONTENT_TYPES: Final = frozenset({PEM_CONTENT_TYPE, PKCS12_CONTENT_TYPE})

# Graph's proof-of-possession rules for addKey/removeKey.
PROOF_AUDIENCE: Final = "00000002-0000-0000-c000-000000000000"
PROOF_MAX_LIFETIME: Final = timedelta(minutes=10)
# Back-dating nbf absorbs clock skew between this host and Graph; the total lifetime
# stays under Graph's limit.
PROOF_BACKDATE: Final = timedelta(seconds=30)
PROOF_LIFETIME: Final = timedelta(minutes=9)

# A freshly generated certificate starts a little in the past for the same reason.
CERT_BACKDATE: Final = timedelta(minutes=10)


def thumbprint_of(der: bytes) -> str:
    """SHA-1 of the DER as upper-case hex: Graph's customKeyIdentifier."""
    return hashlib.sha1(der, usedforsecurity=False).hexdigest().upper()


def x5t_of(der: bytes) -> str:
    """The JWS ``x5t`` header: base64url SHA-1 of the DER, unpadded."""
    digest = hashlib.sha1(der, usedforsecurity=False).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def proof_claims(object_id: str, now: datetime) -> dict[str, object]:
    nbf = int((now - PROOF_BACKDATE).timestamp())
    exp = nbf + int(PROOF_LIFETIME.total_seconds())
    assert exp - nbf <= PROOF_MAX_LIFETIME.total_seconds()
    return {"aud": PROOF_AUDIENCE, "iss": object_id, "nbf": nbf, "exp": exp}


@dataclass(frozen=True, slots=True)
class KeyEntry:
    """One entry of an app's ``keyCredentials`` as a PATCH must resend it.

    ``key`` is the certificate (public) as base64 DER; Graph returns it only when one
    application is read with ``$select=keyCredentials``.
    """

    key_id: str
    key: str | None
    display_name: str | None = None
    type: str = "AsymmetricX509Cert"
    usage: str = "Verify"
    start: datetime | None = None
    end: datetime | None = None
    thumbprint: str | None = None

    def normalised(self) -> KeyEntry:
        return replace(self, key_id=self.key_id.lower())


def key_ids(entries: Iterable[KeyEntry]) -> frozenset[str]:
    return frozenset(e.key_id.lower() for e in entries)


def planned_list(
    current: Sequence[KeyEntry], *, add: KeyEntry | None = None, remove: str | None = None
) -> tuple[KeyEntry, ...]:
    """The whole list to PATCH: everything read, plus ``add``, minus ``remove``."""
    out = [e.normalised() for e in current if remove is None or e.key_id.lower() != remove.lower()]
    if add is not None and add.key_id.lower() not in key_ids(out):
        out.append(add.normalised())
    return tuple(out)


@dataclass(frozen=True, slots=True)
class PatchCheck:
    applied: bool  # our addition is there and our removal is gone
    lost: frozenset[str]  # listed when we wrote, missing now, and not removed by us
    appeared: frozenset[str]  # written by someone else after our write


def check_patch(
    written: Sequence[KeyEntry],
    after: Sequence[KeyEntry],
    *,
    added: str | None = None,
    removed: str | None = None,
) -> PatchCheck:
    """Did a PATCH stick, judged by a read made after it?

    ``written`` is what we sent. Our own change must be visible; anything else we sent
    that is now missing was removed by a concurrent writer (maybe on purpose: a revoked
    certificate must not come back, so the caller reports it and does not re-add it).
    """
    sent, now = key_ids(written), key_ids(after)
    applied = (added is None or added.lower() in now) and (
        removed is None or removed.lower() not in now
    )
    return PatchCheck(
        applied=applied,
        lost=frozenset(sent - now - ({added.lower()} if added else set())),
        appeared=frozenset(now - sent),
    )


_DAYS_PER_MONTH = 30.44  # the mean Gregorian month


def validity_months(lifetime: timedelta, *, capped: bool) -> int:
    """Whole months of validity to ask Key Vault for (it takes no finer lifetime).

    A lifetime capped by a tenant policy is rounded down, so the certificate stays inside
    the cap Graph enforces (0 when the cap is under a month: nothing Key Vault makes
    fits); otherwise to the nearest month, at least one.
    """
    months = lifetime / timedelta(days=_DAYS_PER_MONTH)
    # Rounded down, a month of 31 days still counts as more than the mean: keep a day's
    # margin so a capped certificate never ends past the cap.
    if capped:
        return int(lifetime / timedelta(days=31))
    return max(1, round(months))


