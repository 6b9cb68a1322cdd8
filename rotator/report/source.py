"""The report from the database: the same snapshot an alert pass looks at."""

from __future__ import annotations

from datetime import datetime

from rotator.alerts.runner import take_snapshot
from rotator.config import Policy
from rotator.ports import Store
from rotator.report.data import ReportData, build_report


def load_report(store: Store, policy: Policy, now: datetime) -> ReportData:
    snap = take_snapshot(store, policy, now)
    return build_report(snap.inventory, snap.findings, snap.rotations, snap.last_scan, now)
