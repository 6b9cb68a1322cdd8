"""When the superseded credential may go: after a grace period, or on evidence.

``grace``: once ``grace_hours`` have passed since promote.
``unused``: after the grace period too, and only when the credential usage report shows
the *new* credential signing in after promote (verify's own sign-ins came before promote
and do not count) and the *old* one silent for ``quiet_hours``. Until then retirement is
held; after ``retire_max_wait_hours`` a held retirement is overdue (alerted, still held).
Pure: the report's rows come in as data.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum


class RetireRule(StrEnum):
    GRACE = "grace"
    UNUSED = "unused"


@dataclass(frozen=True, slots=True)
class RetireVerdict:
    retire: bool
    reason: str
    overdue: bool = False  # held for longer than retire_max_wait_hours


NEW_UNUSED = "the new credential has not signed in since promote"
OLD_IN_USE = "old credential last used at"


def held_kind(reason: str | None) -> str | None:
    """Which of the two reasons a held verdict gives (its times aside)."""
    if reason is None:
        return None
    return NEW_UNUSED if NEW_UNUSED in reason else OLD_IN_USE


def _at(value: datetime | None) -> str:
    return "never" if value is None else value.isoformat(timespec="seconds")


def judge_usage(
    usage: Mapping[str, datetime | None],
    *,
    old_key_id: str,
    new_key_id: str,
    promoted_at: datetime,
    now: datetime,
    quiet: timedelta,
    max_wait: timedelta,
) -> RetireVerdict:
    """The ``unused`` rule on the report's last sign-in per key id (absent: never seen)."""
    new_last = usage.get(new_key_id)
    old_last = usage.get(old_key_id)
    overdue = now - promoted_at >= max_wait
    if new_last is None or new_last <= promoted_at:
        return RetireVerdict(
            False,
            f"held: {NEW_UNUSED} "
            f"(last {_at(new_last)}); old credential last used at {_at(old_last)}",
            overdue,
        )
    if old_last is not None and now - old_last < quiet:
        return RetireVerdict(
            False,
            f"held: {OLD_IN_USE} {_at(old_last)} "
            f"(quiet for {quiet.total_seconds() / 3600:g} h needed)",
            overdue,
        )
    return RetireVerdict(
        True,
        f"the new credential signed in at {_at(new_last)} (after promote) and the old one "
        f"was last used at {_at(old_last)}",
    )
