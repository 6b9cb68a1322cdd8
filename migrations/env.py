"""Alembic environment: runs rotator's migrations against the configured database.

The URL comes from (first match): a connection or URL handed in by
``rotator.adapters.db.migrate``; ``alembic -x url=...``; ``ROTATOR_DATABASE_URL``;
the service's default SQLite file.
"""

from __future__ import annotations

import os
from logging.config import fileConfig

import sqlalchemy as sa
from alembic import context

from rotator.adapters.db.models import metadata
from rotator.adapters.db.session import default_database_url, make_engine

config = context.config
# Only the alembic command line has an ini file; the service keeps its own logging.
if config.config_file_name is not None:
    fileConfig(config.config_file_name, disable_existing_loggers=False)
target_metadata = metadata


def _url() -> str:
    handed_in = config.attributes.get("url")
    if isinstance(handed_in, str) and handed_in:
        return handed_in
    x_url = context.get_x_argument(as_dictionary=True).get("url")
    if x_url:
        return x_url
    return os.environ.get("ROTATOR_DATABASE_URL") or default_database_url()


def _configure(connection: sa.Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things; batch mode rebuilds the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )


def run_migrations_offline() -> None:
    url = _url()
    context.configure(
        url=url,
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        render_as_batch=sa.make_url(url).get_backend_name() == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if isinstance(connection, sa.Connection):
        _configure(connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = make_engine(_url(), poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            _configure(conn)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
