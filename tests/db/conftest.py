"""Every store test runs against SQLite and PostgreSQL (``tests/support/databases.py``)."""

from tests.support.databases import db_url, pg_migrated_url, sqlite_template, store

__all__ = ["db_url", "pg_migrated_url", "sqlite_template", "store"]
