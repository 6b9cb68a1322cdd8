"""Engines and sessions, tuned per backend.

SQLite is the single-host default; PostgreSQL is for several replicas. The
settings below are what makes each one behave under the daemon's load.
"""

from __future__ import annotations

from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool

DEFAULT_DATABASE_URL: Final = "sqlite:///rotator.db"
SQLITE_BUSY_TIMEOUT_MS: Final = 30_000
PG_CONNECT_TIMEOUT_S: Final = 10


def default_database_url() -> str:
    """A SQLite file ``rotator.db`` in the current directory."""
    return DEFAULT_DATABASE_URL


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for ``url``; extra keyword arguments go to :func:`sqlalchemy.create_engine`."""
    parsed = sa.make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return _sqlite_engine(url, **kwargs)
    if backend == "postgresql":
        connect_args = dict(kwargs.pop("connect_args", {}))
        connect_args.setdefault("connect_timeout", PG_CONNECT_TIMEOUT_S)
        # A replica that sat idle behind a load balancer or through a failover
        # would otherwise fail its first query with a dead pooled connection.
        kwargs.setdefault("pool_pre_ping", True)
        return sa.create_engine(url, connect_args=connect_args, **kwargs)
    return sa.create_engine(url, **kwargs)


def _sqlite_engine(url: str, **kwargs: Any) -> Engine:
    connect_args = dict(kwargs.pop("connect_args", {}))
    # The daemon's scheduler, HTTP endpoint and workers share the pool across threads.
    connect_args.setdefault("check_same_thread", False)
    connect_args.setdefault("timeout", SQLITE_BUSY_TIMEOUT_MS / 1000)
    is_memory = sa.make_url(url).database in (None, "", ":memory:")
    if is_memory:
        # One connection for every thread: the database calls run in a worker thread,
        # and a connection per thread would be an empty database per thread.
        kwargs.setdefault("poolclass", StaticPool)
    engine = sa.create_engine(url, connect_args=connect_args, **kwargs)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # pysqlite's own transaction handling issues BEGIN lazily and not before
        # SELECT; take control so a transaction means what SQLAlchemy says.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            if not is_memory:
                # WAL lets the CLI and the health endpoint read while the daemon writes.
                cursor.execute("PRAGMA journal_mode=WAL")
                cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        conn.exec_driver_sql("BEGIN")

    return engine


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    # Objects are turned into frozen domain values before the session closes,
    # so nothing needs to be refreshed after commit.
    return sessionmaker(engine, expire_on_commit=False)
