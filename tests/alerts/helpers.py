"""Builders the alert tests share: a policy with an ``[alerts]`` table, a recorded scan."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from rotator.adapters.db import SqlStore
from rotator.config import Policy, load_policy, load_settings
from rotator.domain.records import InventoryRow
from tests.support.records import T0


def policy(tmp_path: Path, alerts_toml: str, *, managed: Sequence[str] = ()) -> Policy:
    lines = ["[defaults]", 'vault_url = "https://vault.example.test"']
    for app in managed:
        lines += ["[[app]]", f'app_id = "{app}"']
    path = tmp_path / "policy.toml"
    path.write_text("\n".join(lines) + "\n" + alerts_toml)
    return load_policy(path, load_settings({}))


def scanned(store: SqlStore, rows: Sequence[InventoryRow], now: datetime = T0,
            status: str = "succeeded") -> str:
    scan_id = store.start_scan(now)
    store.record_inventory(scan_id, rows, now)
    errors = [("x", "unreadable")] if status == "partial" else []
    store.finish_scan(scan_id, now, status=status, apps_seen=3, credentials_seen=len(rows),
                      errors=errors, error="boom" if status == "failed" else None)
    return scan_id
