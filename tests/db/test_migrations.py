"""The migrations build exactly the schema the models describe, on both databases."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from rotator.adapters.db import make_engine, migrate
from rotator.adapters.db.models import metadata
from rotator.domain.states import ACTIVE_STATES, TERMINAL_STATES
from tests.support.databases import throwaway_pg_database

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.db'}"
    else:
        with throwaway_pg_database() as url:
            yield url


def _drift(url: str) -> list[object]:
    engine = make_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True})
            return list(compare_metadata(ctx, metadata))
    finally:
        engine.dispose()


def test_upgrade_head_on_empty_database_matches_models(empty_url: str) -> None:
    assert migrate.current_revision(empty_url) is None
    migrate.upgrade(empty_url)
    assert migrate.current_revision(empty_url) == migrate.head_revision()
    assert migrate.is_up_to_date(empty_url)
    assert _drift(empty_url) == []


def test_upgrade_is_idempotent_and_downgrade_round_trips(empty_url: str) -> None:
    migrate.upgrade(empty_url)
    migrate.upgrade(empty_url)
    migrate.downgrade(empty_url, "base")
    engine = make_engine(empty_url, poolclass=sa.pool.NullPool)
    try:
        assert set(sa.inspect(engine).get_table_names()) <= {"alembic_version"}
    finally:
        engine.dispose()
    migrate.upgrade(empty_url)
    assert _drift(empty_url) == []


def _index_predicate(url: str) -> str:
    engine = make_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            if conn.dialect.name == "sqlite":
                sql = conn.execute(
                    sa.text(
                        "SELECT sql FROM sqlite_master WHERE name = 'uq_rotations_active_app_id'"
                    )
                ).scalar_one()
            else:
                sql = conn.execute(
                    sa.text("SELECT indexdef FROM pg_indexes WHERE indexname = :name"),
                    {"name": "uq_rotations_active_app_id"},
                ).scalar_one()
    finally:
        engine.dispose()
    return str(sql)


def test_one_active_rotation_index_is_unique_and_covers_exactly_the_active_states(
    empty_url: str,
) -> None:
    # compare_metadata does not look at index predicates, so check them directly.
    migrate.upgrade(empty_url)
    ddl = _index_predicate(empty_url)
    assert "UNIQUE" in ddl.upper()
    where = ddl[ddl.upper().index("WHERE") :]
    quoted = set(re.findall(r"'([a-z_]+)'", where))
    assert quoted == {s.value for s in ACTIVE_STATES}
    assert not quoted & {s.value for s in TERMINAL_STATES}


def _sqlite_schema(url: str) -> dict[str, str]:
    engine = make_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text(
                    "SELECT name, sql FROM sqlite_master "
                    "WHERE sql IS NOT NULL AND name != 'alembic_version'"
                )
            ).all()
    finally:
        engine.dispose()
    # A table rebuilt by a batch migration is renamed into place, and SQLite then keeps
    # its name quoted in the stored DDL: the same table either way.
    return {name: " ".join(sql.split()).replace(f'CREATE TABLE "{name}"', f"CREATE TABLE {name}")
            for name, sql in rows}


def test_sqlite_ddl_from_migrations_equals_ddl_from_models(tmp_path: Path) -> None:
    migrated = f"sqlite:///{tmp_path / 'migrated.db'}"
    created = f"sqlite:///{tmp_path / 'created.db'}"
    migrate.upgrade(migrated)
    engine = make_engine(created)
    metadata.create_all(engine)
    engine.dispose()
    assert _sqlite_schema(migrated) == _sqlite_schema(created)


def test_alembic_command_line_takes_the_url_from_x_argument(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "alembic",
            "-c",
            str(REPO / "alembic.ini"),
            "-x",
            f"url={url}",
            "upgrade",
            "head",
        ],
        check=True,
        cwd=tmp_path,
        capture_output=True,
    )
    assert migrate.is_up_to_date(url)


def test_missing_migrations_directory_is_reported(tmp_path: Path) -> None:
    with pytest.raises(migrate.MigrationsNotFound, match="nowhere"):
        migrate.upgrade(f"sqlite:///{tmp_path / 'x.db'}", script_location=tmp_path / "nowhere")
