"""The SQL record of scans, inventory, rotations and audit events (SQLite or PostgreSQL).

Nothing stored here is ever a secret value: the layer refuses ``SecretValue``
objects outright, and the schema has no column meant for key material.
"""

from rotator.adapters.db.repo import RotationConflict, StaleRotation, Store, StoreError
from rotator.adapters.db.session import default_database_url, make_engine
from rotator.adapters.db.views import (
    AuditEvent,
    AuditNote,
    AuditOutcome,
    InventoryRow,
    ScanRun,
    ScanStatus,
    SecretInStore,
)

__all__ = [
    "AuditEvent",
    "AuditNote",
    "AuditOutcome",
    "InventoryRow",
    "RotationConflict",
    "ScanRun",
    "ScanStatus",
    "SecretInStore",
    "StaleRotation",
    "Store",
    "StoreError",
    "default_database_url",
    "make_engine",
]
