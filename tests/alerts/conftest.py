"""Alert tests: loopback receivers (``tests/support/receivers.py``), the store on SQLite
and PostgreSQL (``tests/support/databases.py``) and the engine's world with fake
services (``tests/support/world.py``)."""

from tests.support.databases import db_url, pg_migrated_url, sqlite_template, store
from tests.support.receivers import blackhole_url, http_receiver, refused_url, smtp_server
from tests.support.world import world

__all__ = [
    "blackhole_url",
    "db_url",
    "http_receiver",
    "pg_migrated_url",
    "refused_url",
    "smtp_server",
    "sqlite_template",
    "store",
    "world",
]
