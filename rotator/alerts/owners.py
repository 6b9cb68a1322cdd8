"""Owner routing: which owner hears about which app, and what nobody owns. Pure.

An ``owners`` channel becomes one mail channel per owner address, each with its own
sent-alert records, so every owner gets each alert about their own apps once, and a
digest of their own apps once a day in digest mode.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence

from rotator.domain.alerts import Alert
from rotator.domain.records import InventoryRow

# Channel names are stored in 64 characters: the channel's name, ':', a digest of the address.
_NAME_CHARS = 47


def owners_by_app(rows: Iterable[InventoryRow]) -> dict[str, frozenset[str]]:
    """The owners to tell about each app (lower-case app id): those of its registration
    and of its service principal. An app whose owners are unknown or none maps to an
    empty set."""
    found: dict[str, set[str]] = defaultdict(set)
    for row in rows:
        found[row.app_id.lower()].update(row.owners or ())
    return {app: frozenset(owners) for app, owners in found.items()}


def apps_by_owner(owners_of: Mapping[str, frozenset[str]]) -> dict[str, frozenset[str]]:
    out: dict[str, set[str]] = defaultdict(set)
    for app, owners in owners_of.items():
        for owner in owners:
            out[owner.lower()].add(app)
    return {owner: frozenset(apps) for owner, apps in sorted(out.items())}


def owner_channel_name(channel: str, address: str) -> str:
    """Stable per channel and address; addresses compare case-insensitively."""
    digest = hashlib.sha256(address.lower().encode()).hexdigest()[:16]
    return f"{channel[:_NAME_CHARS]}:{digest}"


def for_owner(alerts: Sequence[Alert], apps: frozenset[str]) -> list[Alert]:
    """Only the alerts about this owner's apps (alerts about no app are not theirs)."""
    return [a for a in alerts if a.app_id is not None and a.app_id.lower() in apps]


def unowned(alerts: Sequence[Alert], owners_of: Mapping[str, frozenset[str]]) -> list[Alert]:
    """Alerts about an app nobody can be told of: the fallback channel's."""
    return [a for a in alerts
            if a.app_id is not None and not owners_of.get(a.app_id.lower())]
