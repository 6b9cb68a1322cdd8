"""Databases for tests: throwaway PostgreSQL databases, migrated store fixtures on
SQLite and PostgreSQL, making a database unreachable, and reading one whole.

PostgreSQL is not optional: CI always provides it, so an unreachable server fails
the run instead of silently testing only SQLite. ``ROTATOR_TEST_POSTGRES_URL`` names
a server where this user may CREATE DATABASE.

The fixtures are used through the conftests that import them (the store and alert
tests).
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa

from rotator.adapters.db import SqlStore, make_engine, migrate
from rotator.adapters.db.models import metadata

DEFAULT_PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def pg_admin_url() -> str:
    return os.environ.get("ROTATOR_TEST_POSTGRES_URL", DEFAULT_PG_URL)


@contextmanager
def throwaway_pg_database() -> Iterator[str]:
    """A freshly created, empty PostgreSQL database; dropped afterwards."""
    admin_url = pg_admin_url()
    admin = make_engine(admin_url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    try:
        with admin.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except sa.exc.OperationalError as exc:
        admin.dispose()
        pytest.fail(
            f"PostgreSQL at {sa.make_url(admin_url).render_as_string(hide_password=True)} is "
            f"unreachable ({exc.orig}); these tests need it. Start PostgreSQL or set "
            "ROTATOR_TEST_POSTGRES_URL to a server where this user may CREATE DATABASE.",
            pytrace=False,
        )
    name = f"rotator_test_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield sa.make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def admin_engine() -> sa.Engine:
    return make_engine(pg_admin_url(), isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)


def set_connections_allowed(db_url: str, allowed: bool) -> None:
    """Make a database unreachable (and drop its connections), or reachable again."""
    name = sa.make_url(db_url).database
    engine = admin_engine()
    with engine.connect() as conn:
        conn.execute(sa.text(
            f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS {"true" if allowed else "false"}'
        ))
        if not allowed:
            conn.execute(sa.text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = :name AND pid <> pg_backend_pid()"
            ), {"name": name})
    engine.dispose()


def database_text(url: str) -> str:
    """Every value of every table as text: what a leak grep has to search."""
    engine = make_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            names = sa.inspect(conn).get_table_names()
            chunks = []
            for name in names:
                for row in conn.execute(sa.text(f'SELECT * FROM "{name}"')):
                    chunks.append(" ".join(str(v) for v in row))
            return "\n".join(chunks)
    finally:
        engine.dispose()


# ------------------------------------------------------------------ store fixtures


@pytest.fixture(scope="session")
def pg_migrated_url() -> Iterator[str]:
    with throwaway_pg_database() as url:
        migrate.upgrade(url)
        yield url


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "rotator.db"
    migrate.upgrade(f"sqlite:///{path}")
    return path


def _truncate(url: str) -> None:
    engine = make_engine(url, poolclass=sa.pool.NullPool)
    names = ", ".join(t.name for t in metadata.sorted_tables)
    with engine.begin() as conn:
        conn.execute(sa.text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    engine.dispose()


@pytest.fixture(
    params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)],
)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated, empty database of each kind."""
    if request.param == "sqlite":
        path = tmp_path / "rotator.db"
        shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
        return f"sqlite:///{path}"
    url: str = request.getfixturevalue("pg_migrated_url")
    _truncate(url)
    return url


@pytest.fixture
def store(db_url: str) -> Iterator[SqlStore]:
    s = SqlStore(make_engine(db_url))
    yield s
    s.close()
