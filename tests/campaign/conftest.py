"""The crash matrix runs real processes against the integration suite's emulated tenant."""

from tests.support.emulated import database_url, emu, pg_database

__all__ = ["database_url", "emu", "pg_database"]
