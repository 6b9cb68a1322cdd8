"""Run the Alembic migrations from code (the daemon and ``rotator`` commands use this).

The migration scripts live in ``migrations/`` beside the ``rotator`` package in a
source checkout or an editable install. A wheel carries a copy as data files,
installed under ``<prefix>/share/rotator/migrations`` (see pyproject.toml's
``[tool.setuptools.data-files]``); it is found through the distribution's
RECORD, so any install scheme (venv, ``--user``, ``--prefix``) works.
A source checkout wins, so an editable install always runs the live scripts.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path, PurePosixPath

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from rotator.adapters.db.session import make_engine


class MigrationsNotFound(RuntimeError):
    pass


# Where a wheel installs the scripts, relative to the installation prefix.
INSTALLED_MIGRATIONS = PurePosixPath("share/rotator/migrations")


def migrations_dir() -> Path:
    """The migration scripts: a source checkout's ``migrations/``, else the installed copy."""
    candidates = list(_candidates())
    for location in candidates:
        if (location / "env.py").is_file():
            return location
    tried = ", ".join(str(c) for c in candidates)
    raise MigrationsNotFound(
        f"no Alembic migrations found (looked in {tried}): install rotator from its wheel "
        "or a source checkout, or pass script_location= the migrations directory"
    )


def _candidates() -> Iterator[Path]:
    # rotator/adapters/db/migrate.py -> the directory holding the ``rotator`` package.
    root = Path(__file__).resolve().parents[3]
    # Only a source checkout (it has pyproject.toml): site-packages may hold someone
    # else's top-level ``migrations`` directory.
    if (root / "pyproject.toml").is_file():
        yield root / "migrations"
    yield from _installed()
    yield Path(sys.prefix) / INSTALLED_MIGRATIONS


def _installed() -> Iterator[Path]:
    """The directory the installed distribution's RECORD lists ``env.py`` in."""
    try:
        dist = metadata.distribution("rotator")
    except metadata.PackageNotFoundError:
        return
    target = (*INSTALLED_MIGRATIONS.parts, "env.py")
    for file in dist.files or ():
        if tuple(file.parts[-len(target) :]) == target:
            yield Path(str(dist.locate_file(file))).resolve().parent


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
