"""The report from the database: the same snapshot an alert pass looks at."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from rotator.alerts.runner import take_snapshot
from rotator.config import Policy
from rotator.ports import Store
from rotator.report.data import ReportData, build_report


def load_report(store: Store, policy: Policy, now: datetime, *,
                on_phase: Callable[[str], None] | None = None) -> ReportData:
    """``on_phase`` is told, in a few words, what is being done now."""
    if on_phase is not None:
        on_phase("reading the inventory, rotations and scans")
    snap = take_snapshot(store, policy, now)
    if on_phase is not None:
        on_phase(f"building the report from {len(snap.inventory):,} credentials")
    return build_report(snap.inventory, snap.findings, snap.rotations, snap.last_scan, now)
