"""The emulated tenant's credentials as the inventory rows a scan records.

``seed_tenant`` builds the same tenant the emulator serves (each bulk app has 1-3
secrets and 0-2 certificates, expiring uniformly from 90 days ago to two years
ahead); reading it in-process skips the HTTP scan, which at tens of thousands of apps
costs a minute the tests and benchmarks of /metrics do not need.
"""

from __future__ import annotations

from rotator.domain.credentials import CredentialKind
from rotator.domain.records import InventoryRow
from rotator.emulator.seed import seed_tenant


def seeded_inventory(apps: int, managed: int, *, seed: int = 1) -> list[InventoryRow]:
    """Rows for every credential of the bulk apps, the first ``managed`` apps managed."""
    tenant = seed_tenant(apps=apps, seed=seed)
    rows: list[InventoryRow] = []
    bulk = [a for a in tenant._apps_by_app_id.values() if a.display_name.startswith("app-")]
    managed_ids = {a.app_id for a in bulk[:managed]}
    for app in bulk:
        creds = [(CredentialKind.SECRET, c.key_id, c.start, c.end)
                 for c in app.password_credentials]
        creds += [(CredentialKind.CERTIFICATE, c.key_id, c.start, c.end)
                  for c in app.key_credentials]
        for kind, key_id, start, end in creds:
            rows.append(InventoryRow(
                app_id=app.app_id, key_id=key_id, object_id=app.id,
                app_display_name=app.display_name, kind=kind, display_name=None,
                start_at=start, end_at=end, managed=app.app_id in managed_ids,
            ))
    return rows
