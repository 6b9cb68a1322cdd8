"""Run the Alembic migrations from code (the daemon and ``rotator`` commands use this).

Where the scripts are found is ``rotator.adapters.db.scripts``; whether a database
is already current is answered there too, without importing Alembic.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine

from rotator.adapters.db.scripts import MigrationsNotFound, migrations_dir
from rotator.adapters.db.session import make_engine

__all__ = ["MigrationsNotFound", "alembic_config", "current_revision", "downgrade",
           "head_revision", "is_up_to_date", "migrations_dir", "upgrade", "upgrade_engine"]


def _checked(location: Path) -> Path:
    if not (location / "env.py").is_file():
        raise MigrationsNotFound(
            f"no Alembic migrations at {location}: pass script_location= a directory "
            "that holds rotator's env.py and versions/"
        )
    return location


def alembic_config(url: str, script_location: str | Path | None = None) -> Config:
    """An Alembic config built in code, so no ``alembic.ini`` is needed at run time."""
    location = _checked(Path(script_location)) if script_location is not None else migrations_dir()
    cfg = Config()
    cfg.set_main_option("script_location", str(location))
    cfg.set_main_option("path_separator", "os")
    # Handed over as an attribute, not a main option: ConfigParser would treat a
    # '%' in an URL-encoded password as interpolation.
    cfg.attributes["url"] = url
    return cfg


def upgrade(url: str, revision: str = "head", *, script_location: str | Path | None = None) -> None:
    """Bring the database at ``url`` up to ``revision`` (creating tables on an empty one)."""
    command.upgrade(alembic_config(url, script_location), revision)


def upgrade_engine(engine: Engine, revision: str = "head") -> None:
    """:func:`upgrade` through ``engine``'s own connections (and so its login, such as
    an Entra token as the password)."""
    cfg = alembic_config(engine.url.render_as_string(hide_password=True))
    with engine.begin() as connection:
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, revision)


def downgrade(url: str, revision: str, *, script_location: str | Path | None = None) -> None:
    command.downgrade(alembic_config(url, script_location), revision)


def current_revision(url: str) -> str | None:
    """The revision the database is at; ``None`` for a database never migrated."""
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()


def head_revision(script_location: str | Path | None = None) -> str | None:
    cfg = alembic_config("", script_location)
    return ScriptDirectory.from_config(cfg).get_current_head()


def is_up_to_date(url: str, *, script_location: str | Path | None = None) -> bool:
    """Whether the database is at the newest revision (a readiness check before serving)."""
    return current_revision(url) == head_revision(script_location)
