"""The SQL record of scans, inventory, rotations, audit events and alert deliveries
(SQLite or PostgreSQL): :class:`rotator.ports.Store` and :class:`rotator.ports.AlertStore`.

Nothing stored here is ever a secret value: the layer refuses ``SecretValue``
objects outright, and the schema has no column meant for key material.
"""

from rotator.adapters.db.alerts_repo import SqlAlertStore
from rotator.adapters.db.no_secrets import SecretInStore
from rotator.adapters.db.repo import SqlStore
from rotator.adapters.db.session import default_database_url, make_engine

__all__ = [
    "SecretInStore",
    "SqlAlertStore",
    "SqlStore",
    "default_database_url",
    "make_engine",
]
